"""Review: parts waiting for a person, pushed live to the project's reviewers."""
