"""FLAME's forward pass in torch, for training (differentiable, batched, any device).

The same computation as ``models.flame.flame_forward`` (numpy, for Blender), step for step, so
the two agree to rounding; tests hold them to 1e-6 in float64. Only training and export import
this module: Blender and the engine never import torch.
"""
from __future__ import annotations

import torch

from .flame import FlameModel


class FlameLayer(torch.nn.Module):
    """A ``FlameModel``'s arrays as buffers (they move with ``.to(device, dtype)``)."""

    def __init__(self, model: FlameModel, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("template", torch.as_tensor(model.template, dtype=dtype))  # (V, 3)
        self.register_buffer("shape_basis", torch.as_tensor(model.shape_basis, dtype=dtype))  # (S, V, 3)
        self.register_buffer("expression_basis", torch.as_tensor(model.expression_basis, dtype=dtype))  # (E, V, 3)
        self.register_buffer("pose_basis", torch.as_tensor(model.pose_basis, dtype=dtype))  # (36, V, 3)
        self.register_buffer("joint_regressor", torch.as_tensor(model.joint_regressor, dtype=dtype))  # (5, V)
        self.register_buffer("skinning_weights", torch.as_tensor(model.skinning_weights, dtype=dtype))  # (V, 5)
        self.parents = tuple(int(parent) for parent in model.parents)

    def forward(
        self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices (B, V, 3) and posed joints (B, 5, 3), metres, for shape (B, S'),
        expression (B, E') and pose (B, 5, 3) axis-angle (see ``models.flame.flame_forward``)."""
        rest = (
            self.template
            + torch.einsum("bs,svc->bvc", shape, self.shape_basis[: shape.shape[-1]])
            + torch.einsum("be,evc->bvc", expression, self.expression_basis[: expression.shape[-1]])
        )  # (B, V, 3)
        joints = torch.einsum("jv,bvc->bjc", self.joint_regressor, rest)  # (B, 5, 3)
        rotations = rodrigues(pose)  # (B, 5, 3, 3)
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        features = (rotations[:, 1:] - eye).flatten(1)  # (B, 36)
        posed = rest + torch.einsum("bp,pvc->bvc", features, self.pose_basis)
        transforms, posed_joints = joint_transforms(rotations, joints, self.parents)  # (B, 5, 3, 4)
        blended = torch.einsum("vj,bjik->bvik", self.skinning_weights, transforms)  # (B, V, 3, 4)
        vertices = torch.einsum("bvik,bvk->bvi", blended[..., :3], posed) + blended[..., 3]
        return vertices, posed_joints


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) for axis-angle vectors (..., 3).

    R = I + a K + b K^2, a = sin(t)/t, b = (1 - cos t)/t^2, Taylor series near t = 0 so that the
    gradient at zero pose is finite (torch's norm has none there, hence the squared angle)."""
    angle2 = (axis_angle**2).sum(-1)  # (...,)
    small = angle2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(angle2), angle2)
    angle = torch.sqrt(safe2)
    a = torch.where(small, 1.0 - angle2 / 6.0, torch.sin(angle) / angle)
    b = torch.where(small, 0.5 - angle2 / 24.0, (1.0 - torch.cos(angle)) / safe2)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(axis_angle.shape + (3,))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None, None] * cross + b[..., None, None] * (cross @ cross)


def joint_transforms(
    rotations: torch.Tensor, joints: torch.Tensor, parents: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Skinning transforms (B, J, 3, 4) and posed joints (B, J, 3); see the numpy twin."""
    world_rotation = [rotations[:, 0]]
    world_origin = [joints[:, 0]]
    for joint in range(1, len(parents)):
        parent = parents[joint]
        offset = joints[:, joint] - joints[:, parent]  # (B, 3)
        world_rotation.append(world_rotation[parent] @ rotations[:, joint])
        world_origin.append(world_origin[parent] + torch.einsum("bij,bj->bi", world_rotation[parent], offset))
    rotation = torch.stack(world_rotation, 1)  # (B, J, 3, 3)
    posed_joints = torch.stack(world_origin, 1)  # (B, J, 3)
    translation = posed_joints - torch.einsum("bjik,bjk->bji", rotation, joints)
    return torch.cat([rotation, translation[..., None]], -1), posed_joints
