"""Routing: from the catalog, cluster health and this agent's locality to each service's
answers (health filter, locality tiers, fail open), and what a zone rebuild changes.
Called when data changes, never per query.

Pure cores: view, annotations, tiers, ports, modes, policy, plain, planner, rebuild, drains,
explain.
Adapters: none.
"""
