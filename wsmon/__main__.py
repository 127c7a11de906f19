"""`python -m wsmon`: the `wsmon` command, for a process that knows its interpreter, not the
script's path (`make stack` starts `wsmon serve` so)."""

from wsmon.cli import main

main(prog_name="wsmon")
