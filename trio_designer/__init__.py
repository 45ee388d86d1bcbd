"""trio_designer: synthetic datasets with LLMs on Trio structured concurrency."""
