"""metasignal trainer: fits, tunes and publishes the balanced meta-model."""
