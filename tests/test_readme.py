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


def test_the_readme_shows_the_committed_results_table_verbatim():
    """The README's results are `reports/results.md` as the pipeline wrote it, not a hand-kept copy (all but its
    title, which is the README section's own heading there)."""
    title, results = (REPO / "reports" / "results.md").read_text().strip().split("\n", 1)
    assert title.startswith("# ") and results.strip() in (REPO / "README.md").read_text(), (
        "README.md's 'Results of the demo run' differs from reports/results.md: paste the file there again, "
        "all but its first line (the title)"
    )


def test_the_environment_is_the_one_constraints_txt_pins():
    """The set-up command installs `constraints.txt`'s versions, those the committed results were made with; the
    check stage's comparison finds no package of the results at another version."""
    from focusface.experiment import environment, environment_drift, locked_versions

    locked = locked_versions(REPO / "constraints.txt")
    assert {"numpy", "opencv-python-headless", "torch", "scipy", "matplotlib", "pillow"} <= set(locked), (
        "constraints.txt must pin every package that computes the results"
    )
    assert not [p for p in ("focusface", "-e") if p in locked], (
        "constraints.txt pins the environment, not focusface itself"
    )
    drift = environment_drift(environment(), locked)
    assert drift == [], (
        f"installed: {drift}; the committed results need constraints.txt's versions: install with the "
        "README's command (pip install -c constraints.txt ...)"
    )
