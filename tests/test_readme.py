import re

from conftest import REPO


def _readme_setup_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Set-up.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md must have a '## Set-up' section with a bash block"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def test_ci_runs_exactly_the_readme_commands():
    commands = _readme_setup_commands()
    assert len(commands) == 2, "the README promises two set-up commands: one installs, one tests"
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-2:] == commands, ".ci/run must end with the README's two commands, verbatim"
