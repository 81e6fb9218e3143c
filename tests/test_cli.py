"""The command line: every command of docs/architecture.md is listed; unknown ones get a suggestion."""

import subprocess
import sys

from jobs import cli

DOCUMENTED_COMMANDS = ["demo", "sweep", "evaluate", "report", "regress", "query", "train", "clic"]


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in DOCUMENTED_COMMANDS:
        assert f"  {name} " in out


def test_unknown_command_suggests(capsys):
    assert cli.main(["evalute"]) == 2
    assert "did you mean 'evaluate'" in capsys.readouterr().err
    assert cli.main(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'xyzzy'" in err and "did you mean" not in err


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "evaluate" in out.stdout
