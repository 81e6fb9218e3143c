"""The command line: every DESIGN.md command is listed; unknown ones get a suggestion."""

import subprocess
import sys

from jobs import cli

DESIGN_COMMANDS = ["demo", "sweep", "evaluate", "report", "regress", "query", "train", "clic"]


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in DESIGN_COMMANDS:
        assert f"  {name} " in out


def test_unknown_command_suggests(capsys):
    assert cli.main(["evalute"]) == 2
    assert "did you mean 'evaluate'" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "evaluate" in out.stdout
