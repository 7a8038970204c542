from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_T2I: _ClassVar[Task]
    TASK_SIMILAR: _ClassVar[Task]
    TASK_INPAINT: _ClassVar[Task]
    TASK_OUTPAINT: _ClassVar[Task]
    TASK_EDIT: _ClassVar[Task]
    TASK_RESTORE: _ClassVar[Task]
    TASK_CONTROLNET: _ClassVar[Task]

class EditMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EDIT_METHOD_UNSPECIFIED: _ClassVar[EditMethod]
    EDIT_METHOD_P2P: _ClassVar[EditMethod]
    EDIT_METHOD_DIFFEDIT: _ClassVar[EditMethod]

class ControlType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_TYPE_UNSPECIFIED: _ClassVar[ControlType]
    CONTROL_TYPE_CANNY: _ClassVar[ControlType]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]
TASK_UNSPECIFIED: Task
TASK_T2I: Task
TASK_SIMILAR: Task
TASK_INPAINT: Task
TASK_OUTPAINT: Task
TASK_EDIT: Task
TASK_RESTORE: Task
TASK_CONTROLNET: Task
EDIT_METHOD_UNSPECIFIED: EditMethod
EDIT_METHOD_P2P: EditMethod
EDIT_METHOD_DIFFEDIT: EditMethod
CONTROL_TYPE_UNSPECIFIED: ControlType
CONTROL_TYPE_CANNY: ControlType
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELED: JobStatus

class Edit(_message.Message):
    __slots__ = ("source_caption", "instruction", "method")
    SOURCE_CAPTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    source_caption: str
    instruction: str
    method: EditMethod
    def __init__(self, source_caption: _Optional[str] = ..., instruction: _Optional[str] = ..., method: _Optional[_Union[EditMethod, str]] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("type", "preprocessed", "conditioning_scale", "low_threshold", "high_threshold")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONING_SCALE_FIELD_NUMBER: _ClassVar[int]
    LOW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HIGH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    type: ControlType
    preprocessed: bool
    conditioning_scale: float
    low_threshold: int
    high_threshold: int
    def __init__(self, type: _Optional[_Union[ControlType, str]] = ..., preprocessed: _Optional[bool] = ..., conditioning_scale: _Optional[float] = ..., low_threshold: _Optional[int] = ..., high_threshold: _Optional[int] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("url", "events")
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    url: str
    events: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, url: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ...) -> None: ...

class Outpaint(_message.Message):
    __slots__ = ("left", "top", "right", "bottom", "ratio")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    BOTTOM_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    left: int
    top: int
    right: int
    bottom: int
    ratio: float
    def __init__(self, left: _Optional[int] = ..., top: _Optional[int] = ..., right: _Optional[int] = ..., bottom: _Optional[int] = ..., ratio: _Optional[float] = ...) -> None: ...

class GenerationRequest(_message.Message):
    __slots__ = ("job_id", "tenant", "task", "prompt", "negative_prompt", "input_image_ids", "mask_image_id", "width", "height", "steps", "guidance_scale", "seed", "n", "conversation_id", "request_id", "outpaint", "strength", "edit", "control", "restore", "webhook", "output_format", "output_quality")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    INPUT_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    MASK_IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPAINT_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    EDIT_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_QUALITY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tenant: str
    task: Task
    prompt: str
    negative_prompt: str
    input_image_ids: _containers.RepeatedScalarFieldContainer[str]
    mask_image_id: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    n: int
    conversation_id: str
    request_id: str
    outpaint: Outpaint
    strength: float
    edit: Edit
    control: Control
    restore: bool
    webhook: Webhook
    output_format: str
    output_quality: int
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., input_image_ids: _Optional[_Iterable[str]] = ..., mask_image_id: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ..., n: _Optional[int] = ..., conversation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., outpaint: _Optional[_Union[Outpaint, _Mapping]] = ..., strength: _Optional[float] = ..., edit: _Optional[_Union[Edit, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ..., restore: _Optional[bool] = ..., webhook: _Optional[_Union[Webhook, _Mapping]] = ..., output_format: _Optional[str] = ..., output_quality: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    step: int
    total: int
    def __init__(self, step: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class GeneratedImage(_message.Message):
    __slots__ = ("image_id", "seed", "width", "height")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    seed: int
    width: int
    height: int
    def __init__(self, image_id: _Optional[str] = ..., seed: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("created_at", "started_at", "finished_at", "encode_s", "denoise_s", "decode_s")
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ENCODE_S_FIELD_NUMBER: _ClassVar[int]
    DENOISE_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    created_at: float
    started_at: float
    finished_at: float
    encode_s: float
    denoise_s: float
    decode_s: float
    def __init__(self, created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., encode_s: _Optional[float] = ..., denoise_s: _Optional[float] = ..., decode_s: _Optional[float] = ...) -> None: ...

class JobRecord(_message.Message):
    __slots__ = ("request", "status", "progress", "images", "timings", "error", "prompt_used", "negative_prompt_used", "model_profile", "model_revision", "worker", "attempts", "source_prompt_used", "edit_method_used", "restore_used", "batch_size")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROMPT_USED_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_USED_FIELD_NUMBER: _ClassVar[int]
    MODEL_PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PROMPT_USED_FIELD_NUMBER: _ClassVar[int]
    EDIT_METHOD_USED_FIELD_NUMBER: _ClassVar[int]
    RESTORE_USED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    request: GenerationRequest
    status: JobStatus
    progress: Progress
    images: _containers.RepeatedCompositeFieldContainer[GeneratedImage]
    timings: Timings
    error: str
    prompt_used: str
    negative_prompt_used: str
    model_profile: str
    model_revision: str
    worker: str
    attempts: int
    source_prompt_used: str
    edit_method_used: str
    restore_used: str
    batch_size: int
    def __init__(self, request: _Optional[_Union[GenerationRequest, _Mapping]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., images: _Optional[_Iterable[_Union[GeneratedImage, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., error: _Optional[str] = ..., prompt_used: _Optional[str] = ..., negative_prompt_used: _Optional[str] = ..., model_profile: _Optional[str] = ..., model_revision: _Optional[str] = ..., worker: _Optional[str] = ..., attempts: _Optional[int] = ..., source_prompt_used: _Optional[str] = ..., edit_method_used: _Optional[str] = ..., restore_used: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...
