"""Property tests of the operator's files and variables, with Hypothesis: the settings loader
(exporter/config.py) and the thresholds loader (wsmon/thresholds.py).

Whatever an operator writes, the loader gives usable values or its own named error (ConfigError
naming the source and key; ThresholdsError naming the file, entry and field), never another
exception: a traceback at start-up tells an operator nothing about which line to fix. The bugs the
properties found (a loader raising something else, or a message of megabytes) are fixed, and each
has a regression test below with its minimal example.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis_profile
import pytest
import yaml
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from wsmon.exporter.config import (
    OPTIONS,
    OPTIONS_BY_NAME,
    ConfigError,
    Settings,
    read_environment,
    read_file,
)
from wsmon.indicators import BY_KEY, Indicator
from wsmon.thresholds import (
    CONDITIONS,
    FIELDS,
    SEVERITIES,
    Threshold,
    ThresholdsError,
    load,
    parse,
)
from wsmon.yamlfile import shown

SOURCE = "thresholds.yaml"
# The regressions of the bugs these properties found (fixed since): each pins one shape of input,
# so a few examples and no shrinking (which would cost every unit run seconds) suffice.
REGRESSION = settings(max_examples=3, phases=[Phase.explicit, Phase.generate])


class Escaped(AssertionError):
    """A loader raised another exception than its named error (the bugs the regressions pin).

    Raised in place of the original so that pytest does not format a RecursionError's thousands
    of frames (seconds of every unit run) for a failure that is expected."""


def escapes(
    kind: type[BaseException] | tuple[type[BaseException], ...],
    call: Callable[[], object],
    named: type[Exception],
) -> None:
    """Raise Escaped if `call` raises `kind` rather than `named`; return if it raises `named`.
    Anything else propagates."""
    try:
        call()
    except named:
        return
    except kind as exc:
        raise Escaped(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    raise AssertionError("no error at all")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file every example overwrites, so no example reads another's. Module-scoped because
    Hypothesis refuses function-scoped fixtures in @given tests: they are not reset between the
    examples of one call."""
    return tmp_path_factory.mktemp("properties") / "wsmon.yaml"


# --- Strategies.

# Integers a float() takes: larger ones have regression tests of their own (below).
FLOAT_SAFE = 10**300
ints = st.integers(-FLOAT_SAFE, FLOAT_SAFE)
small_ints = st.integers(-(2**16), 2**17)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | small_ints
    | st.floats()  # NaN and the infinities too: YAML has .nan and .inf
    | st.text(max_size=12)
    | st.sampled_from(["info", "DEBUG", " warning ", "127.0.0.1", "", "8080", "1e3", "0x10"])
)


def documents(keys: st.SearchStrategy[Any], max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """YAML-able data: scalars, lists and mappings whose keys are often the loader's own."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


option_keys = st.sampled_from(
    [o.name for o in OPTIONS] + [o.name.replace("_", "-") for o in OPTIONS]
)
config_keys = option_keys | st.text(max_size=8) | st.integers(-3, 3) | st.booleans()

# YAML scalars as an operator types them, tricks of YAML 1.1 included, and a few documents'
# worth of structure. Kept out: what the regression tests below cover (a bad date, a bad tag).
yaml_scalars = st.sampled_from(
    [
        "0",
        "8080",
        "-1",
        "1_000",
        "0x1F",
        "0o17",
        "017",
        "1.5",
        "1e3",
        "1.0e+3",
        ".inf",
        "-.inf",
        ".nan",
        "yes",
        "no",
        "on",
        "off",
        "~",
        "null",
        "true",
        "2001-12-14",
        "2001-12-14t21:59:43.10-05:00",
        "12:30:00",
        "'8080'",
        '"debug"',
        "[1, 2]",
        "{a: 1}",
        "!!str 8080",
        "!!binary AAAA",
        "&anchor 5",
        "*anchor",
        "|\n  block",
        ">\n  folded",
        "",
        "'unterminated",
        "[",
        "- item",
        ":",
        "@reserved",
        "\t",
        "%",
    ]
)


@st.composite
def yaml_texts(draw: st.DrawFn, keys: st.SearchStrategy[str]) -> str:
    """A YAML file written by hand: a few `key: value` lines, sometimes a list or junk."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        shape = draw(st.sampled_from(["pair", "pair", "pair", "item", "comment", "junk"]))
        if shape == "pair":
            indent = draw(st.sampled_from(["", "", "  "]))
            lines.append(f"{indent}{draw(keys)}: {draw(yaml_scalars)}")
        elif shape == "item":
            lines.append(f"- {draw(yaml_scalars)}")
        elif shape == "comment":
            lines.append("# " + draw(st.text(max_size=8)))
        else:
            lines.append(draw(st.text(max_size=12)))
    separator = draw(st.sampled_from(["\n", "\r\n"]))
    return separator.join(lines) + draw(st.sampled_from(["", "\n", "\n---\n", "\n...\n"]))


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# --- Settings: the file.


def check_settings(values: dict[str, Any]) -> None:
    """Values a loader returned are usable: each of its option's type and within its range."""
    for name, value in values.items():
        option = OPTIONS_BY_NAME[name]
        assert type(value) is option.kind, (name, value)
        assert option.check(value), (name, value)
    Settings(**values)


UNKNOWN = object()  # the document is not known (the file is random bytes)


def read_config(path: Path, data: Any) -> None:
    """read_file gives usable values or a ConfigError that names the file and, for a mapping, one
    of its keys; any other exception fails the property by propagating."""
    try:
        values = read_file(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        if isinstance(data, dict) and data:
            named = [str(k) for k in data] + [str(k).replace("-", "_") for k in data]
            assert any(f"{k}:" in message or repr(k) in message for k in named), message
        return
    check_settings(values)
    if data is None:
        assert values == {}


@given(documents(config_keys))
def test_any_yaml_document_gives_settings_or_a_config_error(scratch: Path, data: Any) -> None:
    read_config(write_text(scratch, yaml.safe_dump(data)), data)


@given(st.dictionaries(config_keys, scalars, max_size=4))
def test_any_mapping_of_settings_gives_settings_or_a_config_error(
    scratch: Path, data: dict[Any, Any]
) -> None:
    read_config(write_text(scratch, yaml.safe_dump(data)), data)


@given(yaml_texts(option_keys | st.text(max_size=6)))
def test_any_handwritten_yaml_gives_settings_or_a_config_error(scratch: Path, text: str) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None  # not YAML: read_file must say so, naming the file
    read_config(write_text(scratch, text), data)


@given(st.binary(max_size=64))
def test_any_bytes_as_a_file_give_settings_or_a_config_error(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    read_config(scratch, UNKNOWN)


# Valid values of each option, so that a file of good settings must be read back as written.
GOOD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "host": st.sampled_from(["0.0.0.0", "127.0.0.1", "::", "wsmon.internal"]),
    "port": st.integers(0, 65535),
    "workers": st.integers(1, 256),
    "worker_capacity": st.integers(1, 10**6),
    "max_message_bytes": st.integers(128, 64 * 1024 * 1024),
    "rate_limit": st.integers(1, 10**6),
    "send_buffer_limit": st.integers(4096, 2**40),
    "keepalive_seconds": st.integers(0, 32767),
    "drain_seconds": st.floats(min_value=0.001, max_value=3600) | st.integers(1, 3600),
    "log_level": st.sampled_from(["debug", "info", "warning", "error"]),
    "thresholds_file": st.sampled_from(["", "/etc/wsmon/thresholds.yaml"]),
}


def good_values(name: str) -> st.SearchStrategy[Any]:
    # An option added since this table was written: its default is good by definition.
    return GOOD_VALUES.get(name, st.just(getattr(Settings(), name)))


@given(st.data(), st.sets(st.sampled_from(sorted(OPTIONS_BY_NAME))), st.booleans())
def test_good_settings_are_read_back_as_written(
    scratch: Path, data: st.DataObject, names: set[str], dashed: bool
) -> None:
    written = {name: data.draw(good_values(name), label=name) for name in sorted(names)}
    keys = {name: name.replace("_", "-") if dashed else name for name in written}
    write_text(scratch, yaml.safe_dump({keys[name]: value for name, value in written.items()}))
    values = read_file(scratch)
    assert values == {
        name: float(value) if OPTIONS_BY_NAME[name].kind is float else value
        for name, value in written.items()
    }


# --- Settings: the environment.

env_keys = st.one_of(
    option_keys.map(lambda name: "WSMON_" + name.upper()),
    st.sampled_from(
        [
            "WSMON_PORT",
            "WSMON_SERVICE_HOST",
            "WSMON_PORT_8080_TCP_ADDR",
            "WSMON_CONFIG",
            "WSMON_SMTP_HOST",
            "WSMON_PROT",
            "WSMON_",
            "PATH",
        ]
    ),
    st.text(max_size=10).map(lambda s: "WSMON_" + s),
)
env_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "1", "-1", " 8 ", "1e400", "inf", "nan", "1.5", "tcp://10.0.0.1:80"]),
    st.integers().map(str),
)


@given(st.dictionaries(env_keys, env_values, max_size=5))
def test_any_environment_gives_settings_or_a_config_error_naming_the_variable(
    environ: dict[str, str],
) -> None:
    warnings: list[str] = []
    try:
        values = read_environment(environ, warnings)
    except ConfigError as exc:
        message = str(exc)
        assert any(message.startswith(f"environment {key}: ") for key in environ), message
        return
    check_settings(values)
    assert all(isinstance(warning, str) for warning in warnings)


# --- Settings: regressions of the bugs the properties found.


# Scalars PyYAML's constructors fail on with something other than yaml.YAMLError: an impossible
# date (YAML 1.1 reads 2001-13-01 as a timestamp) and explicit tags with a value they cannot take.
unconstructable = st.one_of(
    st.builds("{}-{}-01".format, st.integers(2000, 2099), st.integers(13, 99)),
    st.sampled_from(
        [
            "!!int abc",
            "!!int 0x",
            "!!float abc",
            "!!float .",
            "!!bool maybe",
            "!!timestamp 2001-02-30",
            "!!timestamp x",
        ]
    ),
)
# What they raise: ValueError (dates, numbers), KeyError (!!bool), AttributeError (!!timestamp).
CONSTRUCTOR_ERRORS = (ValueError, KeyError, AttributeError)


@REGRESSION
@given(st.sampled_from([o.name for o in OPTIONS]), unconstructable)
def test_a_value_yaml_cannot_construct_is_a_config_error(
    scratch: Path, name: str, value: str
) -> None:
    path = write_text(scratch, f"{name}: {value}\n")
    escapes(CONSTRUCTOR_ERRORS, lambda: read_file(path), ConfigError)


@REGRESSION
@given(st.integers(min_value=2**1024, max_value=10**400))
def test_a_huge_integer_for_a_float_setting_is_a_config_error(scratch: Path, value: int) -> None:
    path = write_text(scratch, f"drain_seconds: {value}\n")
    escapes(OverflowError, lambda: read_file(path), ConfigError)


def past_the_recursion_limit() -> int:
    """Nesting that PyYAML's recursive composer cannot build: it takes about 2 frames a level
    (492 levels fail in a bare interpreter at the default limit of 1000).

    An example, not a property: Hypothesis lifts the recursion limit by 2000 frames while a test
    runs, and PyYAML scans deep flow nesting in quadratic time, so a property would need seconds
    per example to get past the limit."""
    return sys.getrecursionlimit() // 2 + 100


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deeply_nested_yaml_is_a_config_error(scratch: Path, opener: str) -> None:
    depth = past_the_recursion_limit()
    closer = "]" if opener == "[" else "}"
    path = write_text(scratch, "port: " + opener * depth + closer * depth + "\n")
    escapes(RecursionError, lambda: read_file(path), ConfigError)


def aliased(levels: int) -> str:
    """A YAML flow list of `levels` aliases, each level 9 copies of the one before: a few hundred
    bytes that PyYAML reads as 9**levels shared elements (the "billion laughs" document)."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


@REGRESSION
@given(st.integers(4, 5), st.sampled_from([o.name for o in OPTIONS]))
def test_a_config_error_stays_short_for_a_short_file(scratch: Path, levels: int, name: str) -> None:
    path = write_text(scratch, f"{name}: {aliased(levels)}\n")
    with pytest.raises(ConfigError) as caught:
        read_file(path)
    assert len(str(caught.value)) < 100 * path.stat().st_size


# --- Thresholds.


def check_thresholds(thresholds: tuple[Threshold, ...]) -> None:
    """Thresholds the loader accepted are usable: /api/health and the rules can use every one."""
    assert len({t.name for t in thresholds}) == len(thresholds)
    for t in thresholds:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t.name)
        assert t.metric in BY_KEY
        assert t.condition in CONDITIONS
        assert t.severity in SEVERITIES
        assert type(t.enabled) is bool
        indicator = t.indicator
        assert indicator.low <= t.value <= indicator.high
        assert t.severity != "critical" or indicator.may_page
        t.holds(indicator.low)
        t.holds(indicator.high)
        assert t.text()
        assert t.to_json()["name"] == t.name


def outcome(call: Callable[[], tuple[Threshold, ...]]) -> tuple[Threshold, ...] | ThresholdsError:
    """The thresholds, or the ThresholdsError returned rather than raised; anything else
    propagates and fails the property."""
    try:
        return call()
    except ThresholdsError as exc:
        return exc


def check_refusal(data: Any, exc: ThresholdsError) -> list[tuple[int, str]]:
    """Every line of a ThresholdsError names the file and, for a list, an entry and a field;
    returns the (entry number, field) pairs."""
    lines = str(exc).split("\n")
    if not isinstance(data, list):
        assert lines == [f"{SOURCE}: must be a list of thresholds, got {type(data).__name__}"]
        return []
    # What may start a line: the entry as wsmon/thresholds.py documents it, then a field.
    starts = {}
    for number, entry in enumerate(data, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{SOURCE}: entry {number}" + (f" ({name!r})" if isinstance(name, str) else "")
        # An unknown key is quoted (repr, cut short), so a key holding a newline or a colon
        # cannot pass for another line or another field.
        unknown = (
            {shown(key) for key in entry if key not in FIELDS} if isinstance(entry, dict) else set()
        )
        fields = {*FIELDS, *unknown} if isinstance(entry, dict) else {"entry"}
        for field in fields:
            starts[f"{where}: {field}: "] = (number, field)
    named = []
    for line in lines:
        found = [pair for start, pair in starts.items() if line.startswith(start)]
        assert found, line
        named.extend(found)
    return named


# Unknown keys without a newline: one with it has a regression test of its own (below).
one_line_keys = st.text(max_size=6).filter(lambda key: "\n" not in key)


@given(documents(st.sampled_from(FIELDS) | one_line_keys, max_leaves=12))
def test_any_document_gives_thresholds_or_an_error_naming_entry_and_field(data: Any) -> None:
    result = outcome(lambda: parse(data, SOURCE))
    if isinstance(result, ThresholdsError):
        check_refusal(data, result)
    else:
        check_thresholds(result)


def inside(indicator: Indicator) -> st.SearchStrategy[float]:
    """A value strictly inside the indicator's range, so no condition always or never holds."""
    high = indicator.high if math.isfinite(indicator.high) else indicator.low + 1000.0
    return st.floats(0.01, 0.99).map(lambda f: indicator.low + f * (high - indicator.low))


# Identifiers built from parts rather than from a regex: far cheaper to draw, and the edges are
# still there (a leading underscore, digits after the first character).
identifiers = st.builds(
    "{}{}".format,
    st.sampled_from(["Wsmon", "High_Error", "_x", "a", "Z9"]),
    st.sampled_from(["", "0", "Rate", "_1"]) | st.integers(0, 99).map(str),
)


def entry_body(indicator: Indicator) -> st.SearchStrategy[dict[str, Any]]:
    """A good entry for this indicator, its name apart."""
    return st.fixed_dictionaries(
        {
            "metric": st.just(indicator.key),
            "condition": st.sampled_from(list(CONDITIONS)),
            "value": inside(indicator),
            "for": st.sampled_from(["0s", "30s", "5m", "1h", "1h30m", "500ms", "2d"]),
            "severity": st.sampled_from(list(SEVERITIES) if indicator.may_page else ["warning"]),
            "enabled": st.booleans(),
        }
    )


# Built once: a strategy made per draw would be validated again on every example.
good_entries = st.lists(
    st.tuples(identifiers, st.one_of([entry_body(BY_KEY[key]) for key in sorted(BY_KEY)])).map(
        lambda pair: {"name": pair[0], **pair[1]}
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda entry: str(entry["name"]),
)

# What an operator gets wrong in one field: a wrong type, a typo, a value off the scale.
BAD_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["", "9Lives", "High Error", None, 5, ["a"]]),
    "metric": st.sampled_from(["error_rate", "", None, 1.0, {"a": 1}]),
    "condition": st.sampled_from(["=>", "==", "", None, [">"], {">": 1}]),
    "value": st.sampled_from(["0.5", None, True, [1], float("nan"), -1e9]),
    "for": st.sampled_from(["5 m", "5", "", "m", None, 5, "1m5h"]),
    "severity": st.sampled_from(["page", "Critical", None, 1, ["warning"]]),
    "enabled": st.sampled_from(["yes", 1, 0, None, "true"]),
}


@given(good_entries)
def test_good_entries_parse_to_the_thresholds_they_say(entries: list[dict[str, Any]]) -> None:
    thresholds = parse(entries, SOURCE)
    check_thresholds(thresholds)
    assert [t.name for t in thresholds] == [e["name"] for e in entries]
    assert [t.value for t in thresholds] == [float(e["value"]) for e in entries]


@given(good_entries, st.data(), st.sampled_from(FIELDS), st.booleans())
def test_one_bad_field_is_named_with_its_entry(
    entries: list[dict[str, Any]], data: st.DataObject, field: str, remove: bool
) -> None:
    """Break one field of one entry (give it a bad value, or leave it out): the error names that
    entry and that field, and no other entry."""
    broken = data.draw(st.integers(0, len(entries) - 1), label="broken entry")
    if remove:
        del entries[broken][field]
    else:
        entries[broken][field] = data.draw(BAD_FIELD_VALUES[field], label="bad value")
    result = outcome(lambda: parse(entries, SOURCE))
    assert isinstance(result, ThresholdsError)
    named = check_refusal(entries, result)
    assert {number for number, _ in named} == {broken + 1}
    assert field in {name for _, name in named}


@settings(max_examples=hypothesis_profile.examples(0.5))  # YAML in pure Python: ~10 ms a file
@given(good_entries, st.booleans())
def test_a_thresholds_file_loads_as_its_document_parses(
    scratch: Path, entries: list[dict[str, Any]], broken: bool
) -> None:
    """load() of a written file is parse() of its document, the file's path named in errors."""
    if broken:
        entries[0]["severity"] = "page"
    write_text(scratch, yaml.safe_dump(entries))
    loaded = outcome(lambda: load(scratch))
    parsed = outcome(lambda: parse(entries, str(scratch)))
    assert type(loaded) is type(parsed)
    assert str(loaded) == str(parsed)


def load_any(path: Path) -> None:
    result = outcome(lambda: load(path))
    if isinstance(result, ThresholdsError):
        assert str(result).startswith(f"{path}: "), str(result)
    else:
        check_thresholds(result)


@given(st.binary(max_size=64))
def test_any_bytes_as_a_thresholds_file_give_thresholds_or_an_error(
    scratch: Path, data: bytes
) -> None:
    scratch.write_bytes(data)
    load_any(scratch)


@given(yaml_texts(st.sampled_from(FIELDS)))
def test_any_handwritten_thresholds_file_gives_thresholds_or_an_error(
    scratch: Path, text: str
) -> None:
    load_any(write_text(scratch, text))


# --- Thresholds: regressions of the bugs the properties found.


@REGRESSION
@given(st.integers(min_value=2**1024, max_value=10**400), st.sampled_from(sorted(BY_KEY)))
def test_a_huge_integer_value_is_a_thresholds_error(value: int, metric: str) -> None:
    entry = {
        "name": "Huge",
        "metric": metric,
        "condition": ">",
        "value": value,
        "for": "5m",
        "severity": "warning",
        "enabled": True,
    }
    escapes(OverflowError, lambda: parse([entry], SOURCE), ThresholdsError)


@REGRESSION
@given(st.sampled_from(FIELDS), unconstructable)
def test_a_value_yaml_cannot_construct_is_a_thresholds_error(
    scratch: Path, field: str, value: str
) -> None:
    path = write_text(scratch, f"- {field}: {value}\n")
    escapes(CONSTRUCTOR_ERRORS, lambda: load(path), ThresholdsError)


def test_deeply_nested_thresholds_are_a_thresholds_error(scratch: Path) -> None:
    depth = past_the_recursion_limit()
    path = write_text(scratch, "- value: " + "[" * depth + "]" * depth + "\n")
    escapes(RecursionError, lambda: load(path), ThresholdsError)


@settings(max_examples=3, phases=[Phase.explicit, Phase.generate])
@given(st.text(max_size=4), st.text(max_size=4))
def test_every_line_of_a_thresholds_error_names_the_file(before: str, after: str) -> None:
    result = outcome(lambda: parse([{f"{before}\n{after}": None}], SOURCE))
    assert isinstance(result, ThresholdsError)
    for line in str(result).split("\n"):
        assert line.startswith(f"{SOURCE}: entry 1"), line


@REGRESSION
@given(st.integers(4, 5), st.sampled_from(["value", "for", "condition", "enabled"]))
def test_a_thresholds_error_stays_short_for_a_short_file(
    scratch: Path, levels: int, field: str
) -> None:
    path = write_text(scratch, f"- {field}: {aliased(levels)}\n")
    result = outcome(lambda: load(path))
    assert isinstance(result, ThresholdsError)
    assert len(str(result)) < 100 * path.stat().st_size
