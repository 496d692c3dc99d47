"""Named index tables for SMPL-X and PIXIE.

Every index the pipeline uses goes through a name in this module: joint order, kinematic tree,
the 145-row keypoint layout, part-crop keypoint sets, the 21-slot body-pose layout, the J14
override and the regressor output slices.
"""

from __future__ import annotations

from types import MappingProxyType

#: The 55 SMPL-X joints in model order. Eye joints use the ``smplx`` package / official Blender
#: add-on names (``*_eye_smplhf``); upstream PIXIE calls them ``*_eye_smplx``.
SMPLX_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "jaw", "left_eye_smplhf", "right_eye_smplhf",
    "left_index1", "left_index2", "left_index3", "left_middle1", "left_middle2", "left_middle3",
    "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2", "left_ring3",
    "left_thumb1", "left_thumb2", "left_thumb3",
    "right_index1", "right_index2", "right_index3", "right_middle1", "right_middle2",
    "right_middle3", "right_pinky1", "right_pinky2", "right_pinky3", "right_ring1",
    "right_ring2", "right_ring3", "right_thumb1", "right_thumb2", "right_thumb3",
)
NUM_JOINTS = len(SMPLX_JOINT_NAMES)  # 55
JOINT_INDEX = MappingProxyType({name: i for i, name in enumerate(SMPLX_JOINT_NAMES)})

#: Parent of each SMPL-X joint (-1 for the pelvis), i.e. ``kintree_table[0]`` of the model file.
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)

#: Number of pose-corrective features: 54 non-root joints x 9 entries of (R - I).
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9  # 486

#: PIXIE's 68 face landmarks: 51 static (``lmk_faces_idx``) + 17 dynamic contour points.
NUM_STATIC_LANDMARKS = 51
NUM_CONTOUR_LANDMARKS = 17
NUM_DYNAMIC_LUT_ROWS = 79

#: The 22 extra vertex joints of ``smplx_extra_joints.yaml``, in the file's (alphabetical) order.
EXTRA_JOINT_NAMES: tuple[str, ...] = (
    "head_top", "left_big_toe", "left_ear", "left_eye", "left_heel", "left_index",
    "left_middle", "left_pinky", "left_ring", "left_small_toe", "left_thumb", "nose",
    "right_big_toe", "right_ear", "right_eye", "right_heel", "right_index", "right_middle",
    "right_pinky", "right_ring", "right_small_toe", "right_thumb",
)

#: Rows of the 145-keypoint layout (upstream ``smplx_kpt``).
KPT_JOINTS = slice(0, 55)
KPT_STATIC_LANDMARKS = slice(55, 106)
KPT_CONTOUR_LANDMARKS = slice(106, 123)
KPT_EXTRA = slice(123, 145)
NUM_KEYPOINTS = 145

#: Rows of the 145 layout that feed each part crop (upstream ``part_indices``).
FACE_KPT_ROWS: tuple[int, ...] = tuple(range(55, 123))
LEFT_HAND_KPT_ROWS: tuple[int, ...] = (20, *range(25, 40), 128, 129, 130, 131, 133)
RIGHT_HAND_KPT_ROWS: tuple[int, ...] = (21, *range(40, 55), 139, 140, 141, 142, 144)

#: J14 regressor rows (``SMPLX_to_J14.pkl``) and the 145-layout rows they replace.
J14_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist", "neck", "head",
)
J14_TARGET_ROWS: tuple[int, ...] = tuple(JOINT_INDEX[name] for name in J14_NAMES)

#: Kinematic chains, joint first, root last (upstream ``pose_abs2rel``).
HEAD_CHAIN: tuple[int, ...] = (15, 12, 9, 6, 3, 0)
LEFT_WRIST_CHAIN: tuple[int, ...] = (20, 18, 16, 13, 9, 6, 3, 0)
RIGHT_WRIST_CHAIN: tuple[int, ...] = (21, 19, 17, 14, 9, 6, 3, 0)

#: Slots of the 21-joint ``body_pose`` (SMPL-X joint ``i`` sits in slot ``i - 1``).
BODY_SLOT_NECK = 11
BODY_SLOT_HEAD = 14
BODY_SLOT_LEFT_WRIST = 19
BODY_SLOT_RIGHT_WRIST = 20
#: ``partbody_pose`` (17 joints) fills these ``body_pose`` slots, in order.
PARTBODY_SLOTS: tuple[int, ...] = (*range(0, 11), 12, 13, 15, 16, 17, 18)

#: ``check_pose`` limits for the relative head rotation, degrees, as intrinsic x, y, z Euler.
HEAD_EULER_LIMITS_DEG: tuple[float, float, float] = (20.0, 70.0, 10.0)

#: Regressor output layouts, in slicing order: (name, width).
BODY_OUTPUTS: tuple[tuple[str, int], ...] = (
    ("body_cam", 3), ("global_pose", 6), ("partbody_pose", 17 * 6), ("neck_pose", 6),
)
HEAD_OUTPUTS: tuple[tuple[str, int], ...] = (("head_cam", 3), ("tex", 50), ("light", 27))
HEAD_SHARE_OUTPUTS: tuple[tuple[str, int], ...] = (
    ("shape", 200), ("exp", 50), ("head_pose", 6), ("jaw_pose", 3),
)
HAND_OUTPUTS: tuple[tuple[str, int], ...] = (("hand_cam", 3),)
HAND_SHARE_OUTPUTS: tuple[tuple[str, int], ...] = (
    ("right_wrist_pose", 6), ("right_hand_pose", 15 * 6),
)

#: SMPL-X coefficient counts PIXIE uses, and where they sit in ``shapedirs``.
NUM_BETAS = 200
NUM_EXPRESSION = 50
EXPRESSION_OFFSET = 300  # expression columns are shapedirs[..., 300:350]
NUM_TEX = 50
NUM_LIGHT = 27

#: The 13 top-level keys of ``pixie_model.tar``.
CHECKPOINT_KEYS: tuple[str, ...] = (
    "Encoder_body", "Encoder_head", "Encoder_hand",
    "Regressor_body", "Regressor_head", "Regressor_head_share", "Regressor_hand",
    "Regressor_hand_share",
    "Extractor_head_share", "Extractor_left_hand_share", "Extractor_right_hand_share",
    "Moderator_head_share", "Moderator_hand_share",
)
