"""The gossip protocol's bytes: the generated protobuf code of ``proto/`` (package
``meshd.gossip.v1``, in ``v1/``), and the codecs between it and the model. The only part
that uses protobuf; ``exchange`` is one push-pull as messages, with no IO.

Pure cores: codec, service_decode, record_fast, record_remake, record_codec, publisher,
sealed_record, record_batch, chunk_slices, swim_codec, lists, exchange.
Adapters: none.
"""
