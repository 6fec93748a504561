"""Message classes for proto/tumorstream.proto, built at import time from the committed
FileDescriptorSet (tumorstream.desc, written by scripts/gen-proto with protoc-c). The protobuf
runtime parses the header; no protoc and no generated _pb2 module are needed."""

from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SCHEMA_VERSION = 1


def _load():
    data = resources.files(__package__).joinpath("tumorstream.desc").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)

    def cls(name):
        descriptor = pool.FindMessageTypeByName("tumorstream." + name)
        if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # older runtimes

    enums = {name: pool.FindEnumTypeByName("tumorstream." + name) for name in ("DType", "Organ", "TumorType")}
    return pool, cls, enums


POOL, _cls, _ENUMS = _load()
PatchHeader = _cls("PatchHeader")
PayloadDescriptor = _cls("PayloadDescriptor")
StageTiming = _cls("StageTiming")
StatusRequest = _cls("StatusRequest")
StatusReply = _cls("StatusReply")

DTYPE_FLOAT32 = _ENUMS["DType"].values_by_name["DTYPE_FLOAT32"].number
DTYPE_UINT8 = _ENUMS["DType"].values_by_name["DTYPE_UINT8"].number
DTYPE_INT16 = _ENUMS["DType"].values_by_name["DTYPE_INT16"].number
DTYPE_INT32 = _ENUMS["DType"].values_by_name["DTYPE_INT32"].number
DTYPE_FLOAT16 = _ENUMS["DType"].values_by_name["DTYPE_FLOAT16"].number


def enum_name(enum: str, number: int) -> str:
    """'liver' for enum_name('Organ', 1); 'tiny' for enum_name('TumorType', 1)."""
    value = _ENUMS[enum].values_by_number.get(number)
    if value is None:
        return f"unknown({number})"
    prefix = {"DType": "DTYPE_", "Organ": "ORGAN_", "TumorType": "TUMOR_TYPE_"}[enum]
    return value.name[len(prefix):].lower()


def enum_number(enum: str, name: str) -> int:
    prefix = {"DType": "DTYPE_", "Organ": "ORGAN_", "TumorType": "TUMOR_TYPE_"}[enum]
    return _ENUMS[enum].values_by_name[prefix + name.upper()].number
