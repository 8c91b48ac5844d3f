"""`specforge import`: an axolotl or LLaMA-Factory config, turned into a spec."""
