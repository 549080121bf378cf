"""mesh/model.py: a ServiceKey made once hashes as its (namespace, name), however it is made
(constructor, ``new_key``, ``replace``, copy, pickle), also in another process."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys

from mesh.model import ServiceKey, new_key


def test_every_way_of_making_a_key_hashes_as_its_fields() -> None:
    made = [
        ServiceKey("shop", "web"),
        new_key("shop", "web"),
        copy.copy(ServiceKey("shop", "web")),
        copy.deepcopy(new_key("shop", "web")),
        pickle.loads(pickle.dumps(new_key("shop", "web"))),
        dataclasses.replace(ServiceKey("shop", "api"), name="web"),
    ]
    for key in made:
        assert key == ServiceKey("shop", "web")
        assert hash(key) == hash(("shop", "web"))
        assert repr(key) == "ServiceKey(namespace='shop', name='web')"
    assert ServiceKey("a", "b") < ServiceKey("a", "c") < ServiceKey("b", "a")


def test_a_key_pickled_in_one_process_is_found_in_another() -> None:
    # String hashes differ between processes (the offload worker pickles keys to the agent).
    code = (
        "import pickle, sys; from mesh.model import ServiceKey, new_key; "
        "sys.stdout.buffer.write(pickle.dumps([ServiceKey('shop', 'web'), new_key('ops', 'db')]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    data = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True
    ).stdout
    keys = pickle.loads(data)
    held = {ServiceKey("shop", "web"): 1, new_key("ops", "db"): 2}
    assert [held.get(k) for k in keys] == [1, 2]
    assert [hash(k) for k in keys] == [hash(("shop", "web")), hash(("ops", "db"))]
