from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_STARTING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_STARTING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class JobSpec(_message.Message):
    __slots__ = ("name", "seed", "data", "model", "optimizer", "regularization", "training", "ps", "checkpoint", "sparse_optimizer", "ensemble")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    PS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    seed: int
    data: DataSpec
    model: ModelSpec
    optimizer: OptimizerSpec
    regularization: RegularizationSpec
    training: TrainingSpec
    ps: PsSpec
    checkpoint: CheckpointSpec
    sparse_optimizer: SparseOptimizerSpec
    ensemble: EnsembleSpec
    def __init__(self, name: _Optional[str] = ..., seed: _Optional[int] = ..., data: _Optional[_Union[DataSpec, _Mapping]] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ..., optimizer: _Optional[_Union[OptimizerSpec, _Mapping]] = ..., regularization: _Optional[_Union[RegularizationSpec, _Mapping]] = ..., training: _Optional[_Union[TrainingSpec, _Mapping]] = ..., ps: _Optional[_Union[PsSpec, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointSpec, _Mapping]] = ..., sparse_optimizer: _Optional[_Union[SparseOptimizerSpec, _Mapping]] = ..., ensemble: _Optional[_Union[EnsembleSpec, _Mapping]] = ...) -> None: ...

class EnsembleSpec(_message.Message):
    __slots__ = ("members", "bootstrap", "combine")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    BOOTSTRAP_FIELD_NUMBER: _ClassVar[int]
    COMBINE_FIELD_NUMBER: _ClassVar[int]
    members: int
    bootstrap: bool
    combine: str
    def __init__(self, members: _Optional[int] = ..., bootstrap: _Optional[bool] = ..., combine: _Optional[str] = ...) -> None: ...

class DataSpec(_message.Message):
    __slots__ = ("source", "target", "n_samples", "n_features", "n_classes", "noise", "validation_split", "test_split", "shuffle", "normalize", "layout", "sequence_length", "categorical", "n_fields", "n_ids", "image_size", "augment", "format", "streaming", "max_in_memory", "shuffle_buffer", "validation_source", "test_source")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    N_CLASSES_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SPLIT_FIELD_NUMBER: _ClassVar[int]
    TEST_SPLIT_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    N_FIELDS_FIELD_NUMBER: _ClassVar[int]
    N_IDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_MEMORY_FIELD_NUMBER: _ClassVar[int]
    SHUFFLE_BUFFER_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEST_SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    n_samples: int
    n_features: int
    n_classes: int
    noise: float
    validation_split: float
    test_split: float
    shuffle: bool
    normalize: str
    layout: str
    sequence_length: int
    categorical: _containers.RepeatedScalarFieldContainer[str]
    n_fields: int
    n_ids: int
    image_size: _containers.RepeatedScalarFieldContainer[int]
    augment: AugmentSpec
    format: str
    streaming: bool
    max_in_memory: int
    shuffle_buffer: int
    validation_source: str
    test_source: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., n_samples: _Optional[int] = ..., n_features: _Optional[int] = ..., n_classes: _Optional[int] = ..., noise: _Optional[float] = ..., validation_split: _Optional[float] = ..., test_split: _Optional[float] = ..., shuffle: _Optional[bool] = ..., normalize: _Optional[str] = ..., layout: _Optional[str] = ..., sequence_length: _Optional[int] = ..., categorical: _Optional[_Iterable[str]] = ..., n_fields: _Optional[int] = ..., n_ids: _Optional[int] = ..., image_size: _Optional[_Iterable[int]] = ..., augment: _Optional[_Union[AugmentSpec, _Mapping]] = ..., format: _Optional[str] = ..., streaming: _Optional[bool] = ..., max_in_memory: _Optional[int] = ..., shuffle_buffer: _Optional[int] = ..., validation_source: _Optional[str] = ..., test_source: _Optional[str] = ...) -> None: ...

class AugmentSpec(_message.Message):
    __slots__ = ("shift", "rotate", "scale", "hflip", "noise")
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    HFLIP_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    shift: int
    rotate: float
    scale: _containers.RepeatedScalarFieldContainer[float]
    hflip: bool
    noise: float
    def __init__(self, shift: _Optional[int] = ..., rotate: _Optional[float] = ..., scale: _Optional[_Iterable[float]] = ..., hflip: _Optional[bool] = ..., noise: _Optional[float] = ...) -> None: ...

class Activation(_message.Message):
    __slots__ = ("type", "negative_slope", "pieces")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_SLOPE_FIELD_NUMBER: _ClassVar[int]
    PIECES_FIELD_NUMBER: _ClassVar[int]
    type: str
    negative_slope: float
    pieces: int
    def __init__(self, type: _Optional[str] = ..., negative_slope: _Optional[float] = ..., pieces: _Optional[int] = ...) -> None: ...

class Init(_message.Message):
    __slots__ = ("type", "mean", "std", "low", "high")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    type: str
    mean: float
    std: float
    low: float
    high: float
    def __init__(self, type: _Optional[str] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("type", "units", "activation", "init", "bias_init", "bias", "rate", "filters", "kernel_size", "stride", "padding", "dilation", "groups", "pool_size", "momentum", "eps", "input_dim", "output_dim", "layers", "bidirectional", "return_sequences")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    BIAS_INIT_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DILATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_DIM_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIM_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    RETURN_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    type: str
    units: int
    activation: Activation
    init: Init
    bias_init: Init
    bias: bool
    rate: float
    filters: int
    kernel_size: _containers.RepeatedScalarFieldContainer[int]
    stride: _containers.RepeatedScalarFieldContainer[int]
    padding: str
    dilation: _containers.RepeatedScalarFieldContainer[int]
    groups: int
    pool_size: _containers.RepeatedScalarFieldContainer[int]
    momentum: float
    eps: float
    input_dim: int
    output_dim: int
    layers: int
    bidirectional: bool
    return_sequences: bool
    def __init__(self, type: _Optional[str] = ..., units: _Optional[int] = ..., activation: _Optional[_Union[Activation, _Mapping]] = ..., init: _Optional[_Union[Init, _Mapping]] = ..., bias_init: _Optional[_Union[Init, _Mapping]] = ..., bias: _Optional[bool] = ..., rate: _Optional[float] = ..., filters: _Optional[int] = ..., kernel_size: _Optional[_Iterable[int]] = ..., stride: _Optional[_Iterable[int]] = ..., padding: _Optional[str] = ..., dilation: _Optional[_Iterable[int]] = ..., groups: _Optional[int] = ..., pool_size: _Optional[_Iterable[int]] = ..., momentum: _Optional[float] = ..., eps: _Optional[float] = ..., input_dim: _Optional[int] = ..., output_dim: _Optional[int] = ..., layers: _Optional[int] = ..., bidirectional: _Optional[bool] = ..., return_sequences: _Optional[bool] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("layers", "loss", "init_from", "module", "kwargs", "code", "loss_fn", "type", "embedding")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    INIT_FROM_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LOSS_FN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    loss: str
    init_from: str
    module: str
    kwargs: _struct_pb2.Struct
    code: str
    loss_fn: str
    type: str
    embedding: EmbeddingSpec
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., loss: _Optional[str] = ..., init_from: _Optional[str] = ..., module: _Optional[str] = ..., kwargs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., code: _Optional[str] = ..., loss_fn: _Optional[str] = ..., type: _Optional[str] = ..., embedding: _Optional[_Union[EmbeddingSpec, _Mapping]] = ...) -> None: ...

class EmbeddingSpec(_message.Message):
    __slots__ = ("dim", "buckets", "init", "scale", "admit_after", "max_rows", "evict", "expire_after_steps")
    DIM_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ADMIT_AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    EVICT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AFTER_STEPS_FIELD_NUMBER: _ClassVar[int]
    dim: int
    buckets: int
    init: str
    scale: float
    admit_after: int
    max_rows: int
    evict: str
    expire_after_steps: int
    def __init__(self, dim: _Optional[int] = ..., buckets: _Optional[int] = ..., init: _Optional[str] = ..., scale: _Optional[float] = ..., admit_after: _Optional[int] = ..., max_rows: _Optional[int] = ..., evict: _Optional[str] = ..., expire_after_steps: _Optional[int] = ...) -> None: ...

class SparseOptimizerSpec(_message.Message):
    __slots__ = ("name", "lr", "l2", "eps", "initial_accumulator_value", "betas", "beta", "l1")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ACCUMULATOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    BETAS_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    L1_FIELD_NUMBER: _ClassVar[int]
    name: str
    lr: float
    l2: float
    eps: float
    initial_accumulator_value: float
    betas: _containers.RepeatedScalarFieldContainer[float]
    beta: float
    l1: float
    def __init__(self, name: _Optional[str] = ..., lr: _Optional[float] = ..., l2: _Optional[float] = ..., eps: _Optional[float] = ..., initial_accumulator_value: _Optional[float] = ..., betas: _Optional[_Iterable[float]] = ..., beta: _Optional[float] = ..., l1: _Optional[float] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("type", "step_size", "gamma", "t_max", "min_lr", "warmup_steps")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    T_MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_LR_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    type: str
    step_size: int
    gamma: float
    t_max: int
    min_lr: float
    warmup_steps: int
    def __init__(self, type: _Optional[str] = ..., step_size: _Optional[int] = ..., gamma: _Optional[float] = ..., t_max: _Optional[int] = ..., min_lr: _Optional[float] = ..., warmup_steps: _Optional[int] = ...) -> None: ...

class OptimizerSpec(_message.Message):
    __slots__ = ("name", "lr", "momentum", "dampening", "nesterov", "betas", "eps", "rho", "alpha", "initial_accumulator_value", "lr_decay", "weight_decay", "amsgrad", "centered", "schedule", "clip_grad_norm")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    DAMPENING_FIELD_NUMBER: _ClassVar[int]
    NESTEROV_FIELD_NUMBER: _ClassVar[int]
    BETAS_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ACCUMULATOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    LR_DECAY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    AMSGRAD_FIELD_NUMBER: _ClassVar[int]
    CENTERED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CLIP_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    lr: float
    momentum: float
    dampening: float
    nesterov: bool
    betas: _containers.RepeatedScalarFieldContainer[float]
    eps: float
    rho: float
    alpha: float
    initial_accumulator_value: float
    lr_decay: float
    weight_decay: float
    amsgrad: bool
    centered: bool
    schedule: Schedule
    clip_grad_norm: float
    def __init__(self, name: _Optional[str] = ..., lr: _Optional[float] = ..., momentum: _Optional[float] = ..., dampening: _Optional[float] = ..., nesterov: _Optional[bool] = ..., betas: _Optional[_Iterable[float]] = ..., eps: _Optional[float] = ..., rho: _Optional[float] = ..., alpha: _Optional[float] = ..., initial_accumulator_value: _Optional[float] = ..., lr_decay: _Optional[float] = ..., weight_decay: _Optional[float] = ..., amsgrad: _Optional[bool] = ..., centered: _Optional[bool] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., clip_grad_norm: _Optional[float] = ...) -> None: ...

class RegularizationSpec(_message.Message):
    __slots__ = ("l2", "l1", "l1_mode")
    L2_FIELD_NUMBER: _ClassVar[int]
    L1_FIELD_NUMBER: _ClassVar[int]
    L1_MODE_FIELD_NUMBER: _ClassVar[int]
    l2: float
    l1: float
    l1_mode: str
    def __init__(self, l2: _Optional[float] = ..., l1: _Optional[float] = ..., l1_mode: _Optional[str] = ...) -> None: ...

class EarlyStopping(_message.Message):
    __slots__ = ("monitor", "patience", "min_delta", "restore_best")
    MONITOR_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    RESTORE_BEST_FIELD_NUMBER: _ClassVar[int]
    monitor: str
    patience: int
    min_delta: float
    restore_best: bool
    def __init__(self, monitor: _Optional[str] = ..., patience: _Optional[int] = ..., min_delta: _Optional[float] = ..., restore_best: _Optional[bool] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("num_cpus", "num_gpus")
    NUM_CPUS_FIELD_NUMBER: _ClassVar[int]
    NUM_GPUS_FIELD_NUMBER: _ClassVar[int]
    num_cpus: float
    num_gpus: float
    def __init__(self, num_cpus: _Optional[float] = ..., num_gpus: _Optional[float] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("workers", "mode", "staleness", "batch_size", "epochs", "max_steps", "eval_every_steps", "early_stopping", "worker_resources", "max_failures", "divergence_threshold", "compression", "topk_ratio", "transport", "sparse_staleness", "eval_train_rows")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STALENESS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_FIELD_NUMBER: _ClassVar[int]
    WORKER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURES_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    TOPK_RATIO_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    SPARSE_STALENESS_FIELD_NUMBER: _ClassVar[int]
    EVAL_TRAIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    workers: int
    mode: str
    staleness: int
    batch_size: int
    epochs: int
    max_steps: int
    eval_every_steps: int
    early_stopping: EarlyStopping
    worker_resources: Resources
    max_failures: int
    divergence_threshold: int
    compression: str
    topk_ratio: float
    transport: str
    sparse_staleness: int
    eval_train_rows: int
    def __init__(self, workers: _Optional[int] = ..., mode: _Optional[str] = ..., staleness: _Optional[int] = ..., batch_size: _Optional[int] = ..., epochs: _Optional[int] = ..., max_steps: _Optional[int] = ..., eval_every_steps: _Optional[int] = ..., early_stopping: _Optional[_Union[EarlyStopping, _Mapping]] = ..., worker_resources: _Optional[_Union[Resources, _Mapping]] = ..., max_failures: _Optional[int] = ..., divergence_threshold: _Optional[int] = ..., compression: _Optional[str] = ..., topk_ratio: _Optional[float] = ..., transport: _Optional[str] = ..., sparse_staleness: _Optional[int] = ..., eval_train_rows: _Optional[int] = ...) -> None: ...

class PsSpec(_message.Message):
    __slots__ = ("shards", "resources", "max_params", "max_table_bytes")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_TABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    shards: int
    resources: Resources
    max_params: int
    max_table_bytes: int
    def __init__(self, shards: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., max_params: _Optional[int] = ..., max_table_bytes: _Optional[int] = ...) -> None: ...

class CheckpointSpec(_message.Message):
    __slots__ = ("every_steps", "keep")
    EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    every_steps: int
    keep: int
    def __init__(self, every_steps: _Optional[int] = ..., keep: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "train_loss", "samples", "samples_per_s", "grad_norm")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_S_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: float
    train_loss: float
    samples: int
    samples_per_s: float
    grad_norm: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., train_loss: _Optional[float] = ..., samples: _Optional[int] = ..., samples_per_s: _Optional[float] = ..., grad_norm: _Optional[float] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("step", "epoch", "learning_rate", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "generalization_gap", "train_auc", "val_auc")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    VAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GENERALIZATION_GAP_FIELD_NUMBER: _ClassVar[int]
    TRAIN_AUC_FIELD_NUMBER: _ClassVar[int]
    VAL_AUC_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: float
    learning_rate: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    generalization_gap: float
    train_auc: float
    val_auc: float
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[float] = ..., learning_rate: _Optional[float] = ..., train_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., val_loss: _Optional[float] = ..., val_accuracy: _Optional[float] = ..., generalization_gap: _Optional[float] = ..., train_auc: _Optional[float] = ..., val_auc: _Optional[float] = ...) -> None: ...

class Restored(_message.Message):
    __slots__ = ("step", "reason")
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step: int
    reason: str
    def __init__(self, step: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerReplaced(_message.Message):
    __slots__ = ("worker", "step", "reason")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker: int
    step: int
    reason: str
    def __init__(self, worker: _Optional[int] = ..., step: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("stop_reason", "steps", "epochs", "wall_time_s", "samples_per_s", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "result_json", "total_steps", "skipped_updates", "exported_step", "train_auc", "val_auc", "test_auc", "table_rows")
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_S_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    VAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TEST_LOSS_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_UPDATES_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_STEP_FIELD_NUMBER: _ClassVar[int]
    TRAIN_AUC_FIELD_NUMBER: _ClassVar[int]
    VAL_AUC_FIELD_NUMBER: _ClassVar[int]
    TEST_AUC_FIELD_NUMBER: _ClassVar[int]
    TABLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    stop_reason: str
    steps: int
    epochs: float
    wall_time_s: float
    samples_per_s: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    test_loss: float
    test_accuracy: float
    result_json: str
    total_steps: int
    skipped_updates: int
    exported_step: int
    train_auc: float
    val_auc: float
    test_auc: float
    table_rows: int
    def __init__(self, stop_reason: _Optional[str] = ..., steps: _Optional[int] = ..., epochs: _Optional[float] = ..., wall_time_s: _Optional[float] = ..., samples_per_s: _Optional[float] = ..., train_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., val_loss: _Optional[float] = ..., val_accuracy: _Optional[float] = ..., test_loss: _Optional[float] = ..., test_accuracy: _Optional[float] = ..., result_json: _Optional[str] = ..., total_steps: _Optional[int] = ..., skipped_updates: _Optional[int] = ..., exported_step: _Optional[int] = ..., train_auc: _Optional[float] = ..., val_auc: _Optional[float] = ..., test_auc: _Optional[float] = ..., table_rows: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "name", "state", "spec", "created_at", "started_at", "finished_at", "progress", "result", "error", "run_dir", "attempts", "unreadable", "handbacks")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_FIELD_NUMBER: _ClassVar[int]
    HANDBACKS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: JobState
    spec: JobSpec
    created_at: float
    started_at: float
    finished_at: float
    progress: Progress
    result: JobResult
    error: str
    run_dir: str
    attempts: int
    unreadable: bool
    handbacks: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[str] = ..., run_dir: _Optional[str] = ..., attempts: _Optional[int] = ..., unreadable: _Optional[bool] = ..., handbacks: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "time", "state", "progress", "evaluation", "finished", "restored", "worker_replaced", "total_steps", "member")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    WORKER_REPLACED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    time: float
    state: JobState
    progress: Progress
    evaluation: Evaluation
    finished: Job
    restored: Restored
    worker_replaced: WorkerReplaced
    total_steps: int
    member: int
    def __init__(self, job_id: _Optional[str] = ..., time: _Optional[float] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., finished: _Optional[_Union[Job, _Mapping]] = ..., restored: _Optional[_Union[Restored, _Mapping]] = ..., worker_replaced: _Optional[_Union[WorkerReplaced, _Mapping]] = ..., total_steps: _Optional[int] = ..., member: _Optional[int] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("spec", "job_id", "resume", "code_archive")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    CODE_ARCHIVE_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    job_id: str
    resume: bool
    code_archive: bytes
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., job_id: _Optional[str] = ..., resume: _Optional[bool] = ..., code_archive: _Optional[bytes] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ...) -> None: ...

class ResumeJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ResumeJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("job_id", "format")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    format: str
    def __init__(self, job_id: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ExportModelResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...
