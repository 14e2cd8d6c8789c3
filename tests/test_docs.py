"""The documentation cannot drift from the code:

- the generated blocks (the routes from the OpenAPI document, the
  configuration from registry.settings.VARIABLES) are up to date;
- the code reads no environment variable the configuration does not list,
  and the template sets none it does not know;
- the README links every page under docs/, and every relative link in the
  README and docs/ leads to a file that exists, and to a heading that
  exists when it names one.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYER = REPO / "layers" / "shared" / "registry"
PAGES = sorted((REPO / "docs").glob("*.md"))


def test_generated_blocks_are_up_to_date():
    from devstack import docs

    for (page, name), make in docs.BLOCKS.items():
        text = (REPO / "docs" / page).read_text()
        assert docs.render(text, name, make()) == text, f"docs/{page} ({name}) is out of date: run python -m devstack.docs"


def test_a_stale_block_is_noticed(tmp_path, monkeypatch, capsys):
    from devstack import docs

    page = tmp_path / "configuration.md"
    page.write_text("intro\n<!-- generated: settings (python -m devstack.docs) -->\nold\n<!-- end generated: settings -->\n")
    for other in ("api.md", "deploy.md"):
        (tmp_path / other).write_text((REPO / "docs" / other).read_text())
    monkeypatch.setattr(docs, "DOCS", tmp_path)
    assert docs.main(["--check"]) == 1
    assert "configuration.md" in capsys.readouterr().err
    assert docs.main([]) == 0 and "| `LIVENESS_TTL_SECONDS` | `180` |" in page.read_text()
    assert docs.main(["--check"]) == 0


_READS = re.compile(r"""(?:os\.environ\.get|os\.getenv|_int|_bool|Variable)\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def test_the_code_reads_only_the_variables_the_configuration_lists():
    from registry import settings

    listed = {v.name for v in settings.VARIABLES}
    read = set()
    for path in list(LAYER.glob("*.py")) + list((REPO / "functions").glob("*/app.py")):
        read |= set(_READS.findall(path.read_text()))
    assert "LIVENESS_TTL_SECONDS" in read and "DATABASE_SECRET_ARN" in read  # the scan sees what it must
    assert read <= listed, f"read but not in registry.settings.VARIABLES: {sorted(read - listed)}"
    assert len(listed) == len(settings.VARIABLES), "a variable is listed twice"


def test_the_template_sets_only_variables_the_code_knows(sam):
    from registry import settings

    template = sam
    set_by_template = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            set_by_template |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    # Standard variables the libraries read themselves.
    theirs = {"POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED", "AWS_ENDPOINT_URL"}
    unknown = set_by_template - {v.name for v in settings.VARIABLES} - theirs
    assert not unknown, f"template.yaml sets variables nothing reads: {sorted(unknown)}"


def test_the_readme_links_every_page_and_fits_on_a_few_screens():
    readme = (REPO / "README.md").read_text()
    for page in PAGES:
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
    assert len(readme.splitlines()) <= 160


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_relative_link_resolves():
    links = re.compile(r"\]\(([^)\s]+)\)")
    for page in [REPO / "README.md", *PAGES]:
        for target in links.findall(page.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name}: link to {target} leads nowhere"
            if anchor and resolved.suffix == ".md":
                headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
                assert anchor in headings, f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_the_alarms_runbook_names_every_alarm_of_the_template(sam):
    alarms = {name for name, r in sam["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    runbook = set(re.findall(r"^\| `(\w+)` \| .+ \| .+ \|$", (REPO / "docs" / "deploy.md").read_text().split("## Alarms and what to do")[1].split("\n## ")[0], re.M))
    assert alarms and runbook == alarms, f"in the template only: {sorted(alarms - runbook)}; in the runbook only: {sorted(runbook - alarms)}"
