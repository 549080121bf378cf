"""meshd agent: model, sources, ring, routing policy, daemon."""
