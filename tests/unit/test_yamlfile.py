"""An operator's YAML file that cannot be read: the error names the file and says why in wsmon's
words, never as a bare C-library message or a traceback."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from wsmon.yamlfile import YamlFileError, read_yaml


class Unreadable:
    """A file (as importlib.resources hands them out) whose read fails with `error`."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def read_text(self, encoding: str | None = None) -> str:
        raise self.error

    def __str__(self) -> str:
        return "/etc/wsmon/wsmon.yaml"


def problem(path: object) -> str:
    with pytest.raises(YamlFileError) as caught:
        read_yaml(path, "config file")  # type: ignore[arg-type]
    return str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert problem(path) == f"{path}: cannot read config file: there is no such file"


def test_a_directory(tmp_path: Path) -> None:
    expected = f"{tmp_path}: cannot read config file: it is a directory, not a file"
    assert problem(tmp_path) == expected


def test_a_file_this_user_may_not_read() -> None:
    # Stubbed: the suite may run as root, who reads a file of any mode.
    denied = Unreadable(PermissionError(errno.EACCES, "denied"))
    assert problem(denied) == (
        "/etc/wsmon/wsmon.yaml: cannot read config file: this user may not read it"
        " (check its owner and mode)"
    )


def test_any_other_failure_is_still_an_error_of_this_file() -> None:
    failing = Unreadable(OSError(errno.EIO, "device trouble"))
    assert problem(failing).startswith(
        "/etc/wsmon/wsmon.yaml: cannot read config file: the system refused to read it ("
    )


def test_a_binary_file_is_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "wsmon.yaml"
    path.write_bytes(b"port: \xff\xfe\n")
    assert problem(path) == (
        f"{path}: cannot read config file: byte 6 is not UTF-8 (is it a text file?)"
    )


def test_an_empty_file_is_no_document(tmp_path: Path) -> None:
    path = tmp_path / "wsmon.yaml"
    path.write_text("")
    assert read_yaml(path, "config file") is None
