"""memtypes.report: renderings of results (text with Rich, JSON, HTML with Jinja2); no logic
of its own beyond arranging what the layers below computed."""
