from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_TYPE_UNSPECIFIED: _ClassVar[ServiceType]
    CLUSTER_SET_IP: _ClassVar[ServiceType]
    HEADLESS: _ClassVar[ServiceType]

class SwimState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SWIM_STATE_UNSPECIFIED: _ClassVar[SwimState]
    SWIM_ALIVE: _ClassVar[SwimState]
    SWIM_SUSPECT: _ClassVar[SwimState]
    SWIM_DEAD: _ClassVar[SwimState]
    SWIM_LEFT: _ClassVar[SwimState]
SERVICE_TYPE_UNSPECIFIED: ServiceType
CLUSTER_SET_IP: ServiceType
HEADLESS: ServiceType
SWIM_STATE_UNSPECIFIED: SwimState
SWIM_ALIVE: SwimState
SWIM_SUSPECT: SwimState
SWIM_DEAD: SwimState
SWIM_LEFT: SwimState

class Port(_message.Message):
    __slots__ = ("name", "protocol", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    protocol: str
    port: int
    def __init__(self, name: _Optional[str] = ..., protocol: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("addresses", "ready", "hostname", "zone")
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    ready: bool
    hostname: str
    zone: str
    def __init__(self, addresses: _Optional[_Iterable[str]] = ..., ready: _Optional[bool] = ..., hostname: _Optional[str] = ..., zone: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("namespace", "name", "type", "ports", "endpoints", "exported_at", "annotations", "endpoint_ports", "cluster_ips", "session_affinity", "affinity_timeout_seconds")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_PORTS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_IPS_FIELD_NUMBER: _ClassVar[int]
    SESSION_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    type: ServiceType
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    exported_at: float
    annotations: _containers.RepeatedCompositeFieldContainer[Annotation]
    endpoint_ports: _containers.RepeatedCompositeFieldContainer[Port]
    cluster_ips: _containers.RepeatedScalarFieldContainer[str]
    session_affinity: str
    affinity_timeout_seconds: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[ServiceType, str]] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., exported_at: _Optional[float] = ..., annotations: _Optional[_Iterable[_Union[Annotation, _Mapping]]] = ..., endpoint_ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., cluster_ips: _Optional[_Iterable[str]] = ..., session_affinity: _Optional[str] = ..., affinity_timeout_seconds: _Optional[int] = ...) -> None: ...

class Annotation(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("cluster_id", "generation", "version", "region", "zone", "namespaces", "services", "replica")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    generation: int
    version: int
    region: str
    zone: str
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    replica: str
    def __init__(self, cluster_id: _Optional[str] = ..., generation: _Optional[int] = ..., version: _Optional[int] = ..., region: _Optional[str] = ..., zone: _Optional[str] = ..., namespaces: _Optional[_Iterable[str]] = ..., services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., replica: _Optional[str] = ...) -> None: ...

class Digest(_message.Message):
    __slots__ = ("cluster_id", "generation", "version", "replica", "partial", "checked", "target", "head_hash")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    generation: int
    version: int
    replica: str
    partial: bool
    checked: int
    target: int
    head_hash: bytes
    def __init__(self, cluster_id: _Optional[str] = ..., generation: _Optional[int] = ..., version: _Optional[int] = ..., replica: _Optional[str] = ..., partial: _Optional[bool] = ..., checked: _Optional[int] = ..., target: _Optional[int] = ..., head_hash: _Optional[bytes] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("cluster_id", "address", "replica")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    address: str
    replica: str
    def __init__(self, cluster_id: _Optional[str] = ..., address: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class SignedClusterState(_message.Message):
    __slots__ = ("cluster_id", "state", "key_id", "signature", "certificate", "clusterset")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTERSET_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    state: bytes
    key_id: str
    signature: bytes
    certificate: bytes
    clusterset: str
    def __init__(self, cluster_id: _Optional[str] = ..., state: _Optional[bytes] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., clusterset: _Optional[str] = ...) -> None: ...

class ServiceRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("region", "zone", "namespaces", "drained", "drain_reason", "drain_at", "dns_address", "admin_address")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    DRAIN_REASON_FIELD_NUMBER: _ClassVar[int]
    DRAIN_AT_FIELD_NUMBER: _ClassVar[int]
    DNS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    region: str
    zone: str
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    drained: bool
    drain_reason: str
    drain_at: float
    dns_address: str
    admin_address: str
    def __init__(self, region: _Optional[str] = ..., zone: _Optional[str] = ..., namespaces: _Optional[_Iterable[str]] = ..., drained: _Optional[bool] = ..., drain_reason: _Optional[str] = ..., drain_at: _Optional[float] = ..., dns_address: _Optional[str] = ..., admin_address: _Optional[str] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("cluster_id", "replica", "generation", "version", "service", "deleted", "info")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    replica: str
    generation: int
    version: int
    service: Service
    deleted: ServiceRef
    info: ClusterInfo
    def __init__(self, cluster_id: _Optional[str] = ..., replica: _Optional[str] = ..., generation: _Optional[int] = ..., version: _Optional[int] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., deleted: _Optional[_Union[ServiceRef, _Mapping]] = ..., info: _Optional[_Union[ClusterInfo, _Mapping]] = ...) -> None: ...

class Head(_message.Message):
    __slots__ = ("cluster_id", "replica", "generation", "version", "live", "set_hash")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    SET_HASH_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    replica: str
    generation: int
    version: int
    live: int
    set_hash: bytes
    def __init__(self, cluster_id: _Optional[str] = ..., replica: _Optional[str] = ..., generation: _Optional[int] = ..., version: _Optional[int] = ..., live: _Optional[int] = ..., set_hash: _Optional[bytes] = ...) -> None: ...

class Sealed(_message.Message):
    __slots__ = ("body", "signature", "key_id", "batch")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    key_id: str
    batch: int
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ..., batch: _Optional[int] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("cluster_id", "replica", "generation", "first_version", "digests")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    FIRST_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    replica: str
    generation: int
    first_version: int
    digests: bytes
    def __init__(self, cluster_id: _Optional[str] = ..., replica: _Optional[str] = ..., generation: _Optional[int] = ..., first_version: _Optional[int] = ..., digests: _Optional[bytes] = ...) -> None: ...

class OriginChunk(_message.Message):
    __slots__ = ("cluster_id", "replica", "generation", "from_version", "reset", "records", "head", "certificate", "clusterset", "target", "batches")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTERSET_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    replica: str
    generation: int
    from_version: int
    reset: bool
    records: _containers.RepeatedScalarFieldContainer[bytes]
    head: bytes
    certificate: bytes
    clusterset: str
    target: int
    batches: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, cluster_id: _Optional[str] = ..., replica: _Optional[str] = ..., generation: _Optional[int] = ..., from_version: _Optional[int] = ..., reset: _Optional[bool] = ..., records: _Optional[_Iterable[bytes]] = ..., head: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., clusterset: _Optional[str] = ..., target: _Optional[int] = ..., batches: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PushPullRequest(_message.Message):
    __slots__ = ("sender", "members", "digests", "states", "signed_states", "chunks", "more", "digests_hash", "members_hash")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_STATES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_HASH_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_HASH_FIELD_NUMBER: _ClassVar[int]
    sender: Member
    members: _containers.RepeatedCompositeFieldContainer[Member]
    digests: _containers.RepeatedCompositeFieldContainer[Digest]
    states: _containers.RepeatedCompositeFieldContainer[ClusterState]
    signed_states: _containers.RepeatedCompositeFieldContainer[SignedClusterState]
    chunks: _containers.RepeatedCompositeFieldContainer[OriginChunk]
    more: bool
    digests_hash: bytes
    members_hash: bytes
    def __init__(self, sender: _Optional[_Union[Member, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., digests: _Optional[_Iterable[_Union[Digest, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[ClusterState, _Mapping]]] = ..., signed_states: _Optional[_Iterable[_Union[SignedClusterState, _Mapping]]] = ..., chunks: _Optional[_Iterable[_Union[OriginChunk, _Mapping]]] = ..., more: _Optional[bool] = ..., digests_hash: _Optional[bytes] = ..., members_hash: _Optional[bytes] = ...) -> None: ...

class PushPullResponse(_message.Message):
    __slots__ = ("responder", "members", "states", "signed_states", "digests", "chunks", "more", "digests_hash", "members_hash")
    RESPONDER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_STATES_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_HASH_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_HASH_FIELD_NUMBER: _ClassVar[int]
    responder: Member
    members: _containers.RepeatedCompositeFieldContainer[Member]
    states: _containers.RepeatedCompositeFieldContainer[ClusterState]
    signed_states: _containers.RepeatedCompositeFieldContainer[SignedClusterState]
    digests: _containers.RepeatedCompositeFieldContainer[Digest]
    chunks: _containers.RepeatedCompositeFieldContainer[OriginChunk]
    more: bool
    digests_hash: bytes
    members_hash: bytes
    def __init__(self, responder: _Optional[_Union[Member, _Mapping]] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[ClusterState, _Mapping]]] = ..., signed_states: _Optional[_Iterable[_Union[SignedClusterState, _Mapping]]] = ..., digests: _Optional[_Iterable[_Union[Digest, _Mapping]]] = ..., chunks: _Optional[_Iterable[_Union[OriginChunk, _Mapping]]] = ..., more: _Optional[bool] = ..., digests_hash: _Optional[bytes] = ..., members_hash: _Optional[bytes] = ...) -> None: ...

class SwimMember(_message.Message):
    __slots__ = ("id", "cluster_id", "address", "incarnation", "state", "proof")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    id: str
    cluster_id: str
    address: str
    incarnation: int
    state: SwimState
    proof: bytes
    def __init__(self, id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., address: _Optional[str] = ..., incarnation: _Optional[int] = ..., state: _Optional[_Union[SwimState, str]] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SwimAlive(_message.Message):
    __slots__ = ("member_id", "cluster_id", "address", "incarnation", "proof")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    cluster_id: str
    address: str
    incarnation: int
    proof: bytes
    def __init__(self, member_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., address: _Optional[str] = ..., incarnation: _Optional[int] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SwimAccusation(_message.Message):
    __slots__ = ("member_id", "incarnation", "source_id", "proof")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    incarnation: int
    source_id: str
    proof: bytes
    def __init__(self, member_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., source_id: _Optional[str] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SwimLeft(_message.Message):
    __slots__ = ("member_id", "incarnation", "proof")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    incarnation: int
    proof: bytes
    def __init__(self, member_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SwimUpdate(_message.Message):
    __slots__ = ("alive", "suspect", "dead", "left")
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    alive: SwimAlive
    suspect: SwimAccusation
    dead: SwimAccusation
    left: SwimLeft
    def __init__(self, alive: _Optional[_Union[SwimAlive, _Mapping]] = ..., suspect: _Optional[_Union[SwimAccusation, _Mapping]] = ..., dead: _Optional[_Union[SwimAccusation, _Mapping]] = ..., left: _Optional[_Union[SwimLeft, _Mapping]] = ...) -> None: ...

class SwimPing(_message.Message):
    __slots__ = ("seq", "target_id", "source_id", "source_address", "updates")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target_id: str
    source_id: str
    source_address: str
    updates: _containers.RepeatedCompositeFieldContainer[SwimUpdate]
    def __init__(self, seq: _Optional[int] = ..., target_id: _Optional[str] = ..., source_id: _Optional[str] = ..., source_address: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SwimUpdate, _Mapping]]] = ...) -> None: ...

class SwimAck(_message.Message):
    __slots__ = ("seq", "source_id", "updates")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    source_id: str
    updates: _containers.RepeatedCompositeFieldContainer[SwimUpdate]
    def __init__(self, seq: _Optional[int] = ..., source_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SwimUpdate, _Mapping]]] = ...) -> None: ...

class SwimNack(_message.Message):
    __slots__ = ("seq", "source_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    source_id: str
    def __init__(self, seq: _Optional[int] = ..., source_id: _Optional[str] = ...) -> None: ...

class SwimPingReq(_message.Message):
    __slots__ = ("seq", "target_id", "target_address", "source_id", "source_address", "updates")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    target_id: str
    target_address: str
    source_id: str
    source_address: str
    updates: _containers.RepeatedCompositeFieldContainer[SwimUpdate]
    def __init__(self, seq: _Optional[int] = ..., target_id: _Optional[str] = ..., target_address: _Optional[str] = ..., source_id: _Optional[str] = ..., source_address: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SwimUpdate, _Mapping]]] = ...) -> None: ...

class SwimGossip(_message.Message):
    __slots__ = ("source_id", "updates")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    updates: _containers.RepeatedCompositeFieldContainer[SwimUpdate]
    def __init__(self, source_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[SwimUpdate, _Mapping]]] = ...) -> None: ...

class SwimPushPull(_message.Message):
    __slots__ = ("source_id", "source_address", "members", "reply", "certificates")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    source_address: str
    members: _containers.RepeatedCompositeFieldContainer[SwimMember]
    reply: bool
    certificates: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, source_id: _Optional[str] = ..., source_address: _Optional[str] = ..., members: _Optional[_Iterable[_Union[SwimMember, _Mapping]]] = ..., reply: _Optional[bool] = ..., certificates: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SwimDatagram(_message.Message):
    __slots__ = ("ping", "ack", "nack", "ping_req", "gossip", "push_pull")
    PING_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    PING_REQ_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_FIELD_NUMBER: _ClassVar[int]
    PUSH_PULL_FIELD_NUMBER: _ClassVar[int]
    ping: SwimPing
    ack: SwimAck
    nack: SwimNack
    ping_req: SwimPingReq
    gossip: SwimGossip
    push_pull: SwimPushPull
    def __init__(self, ping: _Optional[_Union[SwimPing, _Mapping]] = ..., ack: _Optional[_Union[SwimAck, _Mapping]] = ..., nack: _Optional[_Union[SwimNack, _Mapping]] = ..., ping_req: _Optional[_Union[SwimPingReq, _Mapping]] = ..., gossip: _Optional[_Union[SwimGossip, _Mapping]] = ..., push_pull: _Optional[_Union[SwimPushPull, _Mapping]] = ...) -> None: ...

class SwimReceipt(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
