"""`specforge chat` and `specforge serve`: talk to a trained run, in the terminal or over HTTP."""
