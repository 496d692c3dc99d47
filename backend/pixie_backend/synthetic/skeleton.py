"""Rest-pose skeleton of the synthetic mannequin.

Conventions (those of the SMPL-X template): metres, y up, the body faces +z, the person's left side
is at +x, T-pose with palms down. The feet stand on ``FLOOR_Y``; the figure is about 1.7 m tall and
its pelvis joint sits near ``(0, -0.35, 0.01)``.

Only the left side is written down; the right side is its mirror image in the plane x = 0.
"""

from __future__ import annotations

import numpy as np

from ..constants import JOINT_INDEX, NUM_JOINTS, SMPLX_JOINT_NAMES

#: Height of the soles, m.
FLOOR_Y = -1.30
#: Height of the top of the head, m.
HEAD_TOP_Y = 0.40

#: Joints on the mid-sagittal plane, (x, y, z) in m.
_MIDLINE: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, -0.350, 0.010),
    "spine1": (0.0, -0.225, -0.010),
    "spine2": (0.0, -0.095, -0.005),
    "spine3": (0.0, 0.025, -0.010),
    "neck": (0.0, 0.150, -0.030),
    "head": (0.0, 0.240, -0.010),
    "jaw": (0.0, 0.232, 0.018),
}

#: Left-side body joints, (x, y, z) in m.
_LEFT_BODY: dict[str, tuple[float, float, float]] = {
    "left_hip": (0.085, -0.445, 0.000),
    "left_knee": (0.095, -0.825, 0.005),
    "left_ankle": (0.085, -1.215, -0.035),
    "left_foot": (0.100, -1.272, 0.085),
    "left_collar": (0.075, 0.100, -0.020),
    "left_shoulder": (0.180, 0.095, -0.025),
    "left_elbow": (0.445, 0.085, -0.035),
    "left_wrist": (0.690, 0.080, -0.030),
    "left_eye_smplhf": (0.031, 0.287, 0.079),
}

#: Finger layout of the left hand. Each entry: first joint (MCP, CMC for the thumb) as an offset
#: from the wrist joint in m, direction of the finger (any length), and the lengths of its three
#: segments in m (the last one ends at the fingertip).
_LEFT_FINGERS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float],
                               tuple[float, float, float]]] = {
    "index": ((0.092, -0.004, 0.029), (1.0, -0.02, 0.10), (0.040, 0.024, 0.021)),
    "middle": ((0.095, -0.003, 0.009), (1.0, -0.02, 0.02), (0.045, 0.028, 0.022)),
    "ring": ((0.090, -0.004, -0.010), (1.0, -0.02, -0.06), (0.042, 0.026, 0.021)),
    "pinky": ((0.080, -0.006, -0.027), (1.0, -0.02, -0.15), (0.033, 0.019, 0.019)),
    "thumb": ((0.022, -0.014, 0.024), (0.72, -0.22, 0.66), (0.040, 0.032, 0.027)),
}

#: Half-thickness (across the palm plane) and half-width of each finger near its base, m.
FINGER_HALF_SIZE: dict[str, tuple[float, float]] = {
    "index": (0.0080, 0.0085),
    "middle": (0.0082, 0.0088),
    "ring": (0.0078, 0.0083),
    "pinky": (0.0068, 0.0072),
    "thumb": (0.0095, 0.0100),
}

FINGER_NAMES: tuple[str, ...] = ("index", "middle", "ring", "pinky", "thumb")
SIDES: tuple[str, ...] = ("left", "right")

#: Radius of the eyeballs, m.
EYEBALL_RADIUS = 0.0125


def _unit(v: tuple[float, float, float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def mirror_x(points: np.ndarray) -> np.ndarray:
    """Mirror points in the plane x = 0.

    Args:
        points: ``(..., 3)``.

    Returns:
        ``(..., 3)``, a new array.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] *= -1.0
    return out


def finger_frame(finger: str, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """Base point and unit direction of one finger.

    Args:
        finger: one of ``FINGER_NAMES``.
        side: ``"left"`` or ``"right"``.

    Returns:
        ``(base (3,), direction (3,))``; the base is the first joint (MCP, CMC for the thumb).
    """
    offset, direction, _ = _LEFT_FINGERS[finger]
    base = np.asarray(_LEFT_BODY["left_wrist"]) + np.asarray(offset)
    d = _unit(direction)
    if side == "right":
        base, d = mirror_x(base), mirror_x(d)
    return base, d


def finger_points(finger: str, side: str = "left") -> np.ndarray:
    """The three joints of a finger and its tip.

    Returns:
        ``(4, 3)``: joint 1, joint 2, joint 3, and the fingertip (on the finger axis, at the end
        of the flesh).
    """
    base, d = finger_frame(finger, side)
    lengths = np.cumsum((0.0, *_LEFT_FINGERS[finger][2]))
    pts = base[None] + lengths[:, None] * d[None]
    return pts


def rest_joints() -> np.ndarray:
    """The 55 rest-pose joint positions the mannequin is built around.

    Returns:
        ``(55, 3)`` float64, in ``constants.SMPLX_JOINT_NAMES`` order.
    """
    joints = np.full((NUM_JOINTS, 3), np.nan)
    for name, p in _MIDLINE.items():
        joints[JOINT_INDEX[name]] = p
    for name, p in _LEFT_BODY.items():
        joints[JOINT_INDEX[name]] = p
        joints[JOINT_INDEX["right" + name[4:]]] = mirror_x(np.asarray(p))
    for side in SIDES:
        for finger in FINGER_NAMES:
            pts = finger_points(finger, side)
            for k in range(3):
                joints[JOINT_INDEX[f"{side}_{finger}{k + 1}"]] = pts[k]
    if np.isnan(joints).any():
        missing = [SMPLX_JOINT_NAMES[i] for i in np.flatnonzero(np.isnan(joints[:, 0]))]
        raise RuntimeError(f"skeleton is missing joints {missing}")
    return joints
