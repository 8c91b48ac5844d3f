"""`specforge report`: one self-contained HTML page per run, sweep or comparison."""
