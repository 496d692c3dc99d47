"""SMPL-X names and numbers the add-on needs, kept independent of ``pixie_backend``.

The add-on never imports the backend at run time; ``tests/addon_io/test_constants.py`` checks
that these tables equal ``pixie_backend.constants``.
"""

from __future__ import annotations

#: The 55 SMPL-X joints in model order; these are also the bone names of the official SMPL-X
#: Blender add-on (eyes are ``*_eye_smplhf``).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "jaw",
    "left_eye_smplhf",
    "right_eye_smplhf",
    "left_index1",
    "left_index2",
    "left_index3",
    "left_middle1",
    "left_middle2",
    "left_middle3",
    "left_pinky1",
    "left_pinky2",
    "left_pinky3",
    "left_ring1",
    "left_ring2",
    "left_ring3",
    "left_thumb1",
    "left_thumb2",
    "left_thumb3",
    "right_index1",
    "right_index2",
    "right_index3",
    "right_middle1",
    "right_middle2",
    "right_middle3",
    "right_pinky1",
    "right_pinky2",
    "right_pinky3",
    "right_ring1",
    "right_ring2",
    "right_ring3",
    "right_thumb1",
    "right_thumb2",
    "right_thumb3",
)
NUM_JOINTS = len(JOINT_NAMES)  # 55

#: Parent of each joint, -1 for the pelvis (``kintree_table[0]``).
PARENTS: tuple[int, ...] = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    15,
    15,
    15,
    20,
    25,
    26,
    20,
    28,
    29,
    20,
    31,
    32,
    20,
    34,
    35,
    20,
    37,
    38,
    21,
    40,
    41,
    21,
    43,
    44,
    21,
    46,
    47,
    21,
    49,
    50,
    21,
    52,
    53,
)

#: Name of the extra bone at the armature origin that parents ``pelvis`` (official add-on).
ROOT_BONE = "root"

NUM_BETAS = 200
NUM_EXPRESSION = 50
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9  # 486

#: Shape-key names (official SMPL-X add-on convention).
SHAPE_KEY_FMT = "Shape{:03d}"
EXPRESSION_KEY_FMT = "Exp{:03d}"
POSE_KEY_FMT = "Pose{:03d}"
#: The single key holding the result's pose correctives for the imported pose.
BAKED_CORRECTIVE_KEY = "PoseCorrectives"

RESULT_FORMAT = "pixie-result"
PACKAGE_FORMAT = "pixie-smplx-package"
SEQUENCE_FORMAT = "pixie-sequence"
#: A sequence result file's name ends so.
SEQUENCE_SUFFIX = ".pixie-seq.npz"
#: The add-on's record of the local clip a backend computed a sequence file from (``client/sequence.py``).
SOURCE_RECORD_SUFFIX = ".pixie-seq-source.json"
SUPPORTED_MAJOR_VERSION = 1  # model packages and sequence files
#: Result-file versions this add-on reads (2 adds the face appearance; docs/result-format.md).
SUPPORTED_RESULT_VERSIONS = (1, 2)
