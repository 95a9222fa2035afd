"""From observations to verdicts (classify)."""
