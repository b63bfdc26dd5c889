// The choices of a training config that are names in the file (model.kind, optimizer.type, ...), as
// typed enums, each with ONE name table (base/enum_names.h) that the key table, --help, the run
// echo and every error use. The pipeline's and comm's own choices keep their tables beside them.
#pragma once

#include "base/enum_names.h"

namespace mp::train {

enum class ModelKind { Gpt, Mlp, Realistic };
enum class OptimizerKind { AdamW, Sgd };
enum class LrScheduleKind { Cosine, Constant };  // after the linear warm-up
// fp32; tf32: float32 GEMMs on TF32 tensor cores; bf16: mixed precision (float32 masters).
enum class Precision { Fp32, Tf32, Bf16 };
enum class DataKind { Synthetic, Text, Shard };
enum class DeviceChoice { Auto, Cpu, Cuda };  // auto: the GPU when this rank has one

inline const EnumNames<ModelKind>& enum_names(ModelKind) {
    static const EnumNames<ModelKind> names{{ModelKind::Gpt, "gpt"}, {ModelKind::Mlp, "mlp"},
                                            {ModelKind::Realistic, "realistic"}};
    return names;
}

inline const EnumNames<OptimizerKind>& enum_names(OptimizerKind) {
    static const EnumNames<OptimizerKind> names{{OptimizerKind::AdamW, "adamw"}, {OptimizerKind::Sgd, "sgd"}};
    return names;
}

inline const EnumNames<LrScheduleKind>& enum_names(LrScheduleKind) {
    static const EnumNames<LrScheduleKind> names{{LrScheduleKind::Cosine, "cosine"},
                                                 {LrScheduleKind::Constant, "constant"}};
    return names;
}

inline const EnumNames<Precision>& enum_names(Precision) {
    static const EnumNames<Precision> names{{Precision::Fp32, "fp32"}, {Precision::Tf32, "tf32"},
                                            {Precision::Bf16, "bf16"}};
    return names;
}

inline const EnumNames<DataKind>& enum_names(DataKind) {
    static const EnumNames<DataKind> names{{DataKind::Synthetic, "synthetic"}, {DataKind::Text, "text"},
                                           {DataKind::Shard, "shard"}};
    return names;
}

inline const EnumNames<DeviceChoice>& enum_names(DeviceChoice) {
    static const EnumNames<DeviceChoice> names{{DeviceChoice::Auto, "auto"}, {DeviceChoice::Cpu, "cpu"},
                                               {DeviceChoice::Cuda, "cuda"}};
    return names;
}

}  // namespace mp::train
