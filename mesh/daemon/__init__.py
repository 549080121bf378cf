"""The daemon shell: settings (every default written once), the agent that wires the parts
and pumps them, the run loop, the ``meshd`` command line, the admin server and metrics.

Pure cores: settings, values.
Adapters: agent, front, inputs, runner, cli, flags, demo, certs_command, admin, metrics,
status, security, hostinfo, state_dir, publishing, heap.
"""
