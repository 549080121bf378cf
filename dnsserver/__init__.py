"""meshd DNS server: the clusterset.local name grammar, pre-built answers, UDP/TCP serving.

A library: it imports nothing from ``mesh``. Answers are encoded when data changes
(``records``, ``zone``); a query reads the header and question, looks the bytes up and
patches the ID (``query``; the C batch path ``_fastpath``).

Pure cores: wire, answer, nameblob, rotation, records, plain, plainblob, headless, weighted, zone,
query, tcp_table.
Adapters: server, tcp, workers, loop, queries_first.
"""
