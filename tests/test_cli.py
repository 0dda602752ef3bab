import subprocess
import sys

import pytest

from analysis import cli


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("aejets ")


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_subcommand_has_help(command):
    name = command.replace("_", "-")
    result = subprocess.run(
        [sys.executable, "-m", "analysis.cli", name, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"aejets {name}" in result.stdout
