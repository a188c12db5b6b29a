"""The HTML report: one self-contained page (inline CSS, no external assets) via Jinja2."""

from __future__ import annotations

import jinja2

from memtypes.report.model import counterexamples, family_tables, headline, legend


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("memtypes.report", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render_check(matrix) -> str:
    tpl = _env().get_template("check.html.j2")
    return tpl.render(tables=family_tables(matrix), legend=legend(matrix),
                      counterexamples=counterexamples(matrix), stats=matrix.stats,
                      jobs=matrix.jobs, headline=headline(matrix), zip=zip)
