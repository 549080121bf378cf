"""The daemon shell: settings (every default written once), the agent that wires the parts
and pumps them, the run loop, the ``meshd`` command line (with drains and drills), the admin
server and metrics.

Pure cores: settings, values, drill_plan, health_gate.
Adapters: agent, front, inputs, runner, cli, flags, demo, certs_command, admin, metrics,
status, security, hostinfo, state_dir, announce, admin_routing, routing_commands, drill,
publishing, heap, rebuilding.
"""
