"""The micro-expression network in torch (training, export and tests only; inference is ONNX).

Two parts, after "Fine-Grained 3D Facial Reconstruction for Micro-Expressions" (arXiv 2603.07043):

- ``GlobalDynamicEncoder``: the global dynamic feature. Per frame, landmark features are pooled
  per face region, then dilated temporal convolutions over the window turn them into a motion
  code per frame (B, W, G). Pre-trained on macro motion, fine-tuned on micro events. It is
  plug-and-play: built with ``temporal=False`` the model has no encoder and the deformation
  module runs unconditioned (training drops the feature now and then so both work).
- ``MeshDeformation``: dynamic-guided mesh deformation on the 478-landmark canonical mesh. Per
  vertex it reads the baseline landmarks, the flow and the take-wide landmark/flow fusion
  (``fusion.py``: flow's precision, the landmarks' lack of drift), plus the neutral geometry
  (position, normal). Blocks of depthwise
  temporal convolution (per vertex, along time) and gather-based graph convolution (k padded
  neighbours, no dense adjacency), FiLM-conditioned on the global feature, end in a per-vertex
  refinement of the total and the micro and detail layers split off it (macro = the rest); per-region event logits come from region-pooled
  features, the micro layer's regional mean and peak, and the global feature, through two temporal
  convolutions.

Layout inside is (B, C, N, W): 1x1 convolutions are the per-vertex linear maps and (1, 5)
convolutions the temporal ones, both fast in onnxruntime on CPU; a neighbour gather along N copies
whole time rows (W contiguous floats) instead of single floats, which made it 3x faster than
gathering along an innermost N. Padding neighbours point at the vertex itself and are subtracted
again, so no broadcast over K is needed.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np
import torch
from torch import nn

from .features import EVENT_REGIONS, mesh_graph, region_membership

INPUT_NAMES = ("landmarks_mm", "flow_mm", "flow_mask", "valid", "geometry", "fps", "fused_mm")
OUTPUT_NAMES = ("macro_mm", "micro_mm", "detail_mm", "event_logits")
_DISPLACEMENT_SCALE = 5.0  # mm: typical expression displacement, inputs divided by it
_VELOCITY_SCALE = 20.0  # mm/s
_GEOMETRY_SCALE = 50.0  # mm: half a face
_INPUT_CHANNELS = 21
CODE_UNBOUNDED = 1e6  # the global code's range before ``set_code_range``: no bound in practice


@dataclass
class NetworkConfig:
    channels: int = 24  # per-vertex features
    global_channels: int = 32  # global dynamic feature G
    dilations: tuple[int, ...] = (1, 3, 9)  # one deformation block per entry (temporal kernel 5)
    global_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # temporal encoder (kernel 3): 127 frames seen
    temporal: bool = True  # build the global dynamic encoder
    regions: tuple[str, ...] = EVENT_REGIONS
    window: int = 128  # frames per window (training and inference)
    micro_scale_mm: float = 0.5  # output scales: raw unit outputs times these
    detail_scale_mm: float = 0.5
    macro_scale_mm: float = 1.0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class GraphConv(nn.Module):
    """x_v' = A x_v + mean_{u in N(v)} B x_u over k neighbours (padding = v itself, subtracted)."""

    def __init__(self, channels: int, neighbours: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        self.linear = nn.Conv2d(channels, 2 * channels, 1)
        self.channels = channels
        degree = (weights > 0).sum(axis=1).astype(np.float32)  # (N,)
        self.neighbours = neighbours.shape[1]
        self.register_buffer("index", torch.as_tensor(neighbours.reshape(-1), dtype=torch.long), persistent=False)
        self.register_buffer("inverse_degree", torch.as_tensor(1.0 / degree).view(-1, 1), persistent=False)  # (N, 1)
        self.register_buffer("padding", torch.as_tensor((self.neighbours - degree) / degree).view(-1, 1),
                             persistent=False)  # (N, 1) self-copies among the K, per degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, N, W) -> (B, C, N, W)
        own, other = self.linear(x).split(self.channels, dim=1)
        batch, channels, count, frames = other.shape
        gathered = other.index_select(2, self.index).reshape(batch, channels, count, self.neighbours, frames)
        return own + gathered.sum(3) * self.inverse_degree - other * self.padding


class DeformationBlock(nn.Module):
    """Temporal (depthwise along W) then graph mixing, FiLM-conditioned, residual."""

    def __init__(self, channels: int, global_channels: int, dilation: int,
                 neighbours: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        self.temporal = nn.Conv2d(channels, channels, (1, 5), padding=(0, 2 * dilation),
                                  dilation=(1, dilation), groups=channels)
        self.graph = GraphConv(channels, neighbours, weights)
        self.film = nn.Conv1d(global_channels, 2 * channels, 1) if global_channels else None
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
        h = self.graph(self.activation(self.temporal(x)))  # (B, C, N, W)
        if self.film is not None and code is not None:
            gamma, beta = self.film(code).unsqueeze(2).chunk(2, dim=1)  # (B, C, 1, W) each
            h = h * (1.0 + gamma) + beta
        return x + self.activation(h)


class GlobalDynamicEncoder(nn.Module):
    """Per-frame region pooling -> dilated temporal convolutions: (B, C, N, W) -> (B, G, W).

    The code ends clipped, per channel, to the range it had on training data (``set_code_range``).
    Real footage's landmark motion is larger and more face-wide than the synthetic data's, and
    its unbounded code reached 4-9x its training norm on a talking clip; every FiLM modulation
    followed it, and the reconstruction disagreed with the measured flow twice as much as the same
    network without its code. Clipped, a window unlike anything trained on cannot modulate more
    than training did.
    """

    def __init__(self, channels: int, global_channels: int, dilations: tuple[int, ...],
                 membership: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("membership", torch.as_tensor(membership), persistent=False)  # (R, N)
        regions = membership.shape[0]
        self.project = nn.Conv1d(channels * regions, global_channels, 1)
        self.layers = nn.ModuleList(
            nn.Conv1d(global_channels, global_channels, 3, padding=d, dilation=d) for d in dilations
        )
        self.activation = nn.GELU()
        self.register_buffer("code_low", torch.full((1, global_channels, 1), -CODE_UNBOUNDED))  # (1, G, 1)
        self.register_buffer("code_high", torch.full((1, global_channels, 1), CODE_UNBOUNDED))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.matmul(self.membership, x).flatten(1, 2)  # (B, C*R, W)
        code = self.activation(self.project(pooled))
        for layer in self.layers:
            code = code + self.activation(layer(code))
        return torch.minimum(torch.maximum(code, self.code_low), self.code_high)  # (B, G, W)


class EventHead(nn.Module):
    """Per-region features over time -> event logit: two temporal convolutions (an event is a rise
    and fall over 0.15-0.5 s, a shape in time, not a level). (B, C_in, R, W) -> (B, 1, R, W)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, (1, 5), padding=(0, 4), dilation=(1, 2)), nn.GELU(),
            nn.Conv2d(hidden, hidden, (1, 5), padding=(0, 8), dilation=(1, 4)), nn.GELU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MicroNet(nn.Module):
    """Inputs (see ``INPUT_NAMES``) -> macro, micro, detail (B, W, 478, 3) mm and event logits (B, W, R)."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NetworkConfig()
        neighbours, weights = mesh_graph()
        membership = region_membership(tuple(config.regions))
        global_channels = config.global_channels if config.temporal else 0
        self.encode = nn.Conv2d(_INPUT_CHANNELS, config.channels, 1)
        self.global_encoder = (GlobalDynamicEncoder(config.channels, global_channels, config.global_dilations,
                                                    membership) if config.temporal else None)
        self.blocks = nn.ModuleList(
            DeformationBlock(config.channels, global_channels, d, neighbours, weights) for d in config.dilations
        )
        self.deform = nn.Conv2d(config.channels, 9, 1)
        self.event = EventHead(config.channels + global_channels + 2, config.global_channels)
        self.register_buffer("membership", torch.as_tensor(membership), persistent=False)  # (R, N)
        self.register_buffer("scales", torch.tensor([config.macro_scale_mm] * 3 + [config.micro_scale_mm] * 3
                                                    + [config.detail_scale_mm] * 3).view(1, 9, 1, 1), persistent=False)
        self.drop_global = 0.0  # training: probability of running a batch without the global feature

    def vertex_features(self, landmarks_mm: torch.Tensor, flow_mm: torch.Tensor, flow_mask: torch.Tensor,
                        valid: torch.Tensor, geometry: torch.Tensor, fps: torch.Tensor, fused_mm: torch.Tensor
                        ) -> torch.Tensor:
        """The inputs as per-vertex features (B, C, N, W): what the encoder and the blocks read.
        landmarks_mm, flow_mm, fused_mm (B, W, N, 3); flow_mask (B, W, N, 1); valid (B, W, 1);
        geometry (B, N, 6); fps (B, 1)."""
        fused = fused_mm
        frames = landmarks_mm.shape[1]
        per_frame = torch.cat([
            landmarks_mm / _DISPLACEMENT_SCALE,
            fused / _DISPLACEMENT_SCALE,
            (landmarks_mm - fused) / _DISPLACEMENT_SCALE * 4.0,  # landmark noise + drift, small
            flow_mm * fps.view(-1, 1, 1, 1) / _VELOCITY_SCALE,  # mm/s
            flow_mask,
            valid.unsqueeze(-1).expand_as(flow_mask),
            (geometry / _GEOMETRY_SCALE).unsqueeze(1).expand(-1, frames, -1, -1),
            torch.log(fps / 60.0).view(-1, 1, 1, 1).expand_as(flow_mask),
        ], dim=-1)  # (B, W, N, 21)
        return self.encode(per_frame.permute(0, 3, 2, 1))  # (B, C, N, W)

    def forward(self, landmarks_mm: torch.Tensor, flow_mm: torch.Tensor, flow_mask: torch.Tensor,
                valid: torch.Tensor, geometry: torch.Tensor, fps: torch.Tensor, fused_mm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.vertex_features(landmarks_mm, flow_mm, flow_mask, valid, geometry, fps, fused_mm)  # (B, C, N, W)
        code = self.global_encoder(x) if self.global_encoder is not None else None  # (B, G, W)
        if code is not None and self.training and self.drop_global > 0 and torch.rand(()) < self.drop_global:
            code = torch.zeros_like(code)
        for block in self.blocks:
            x = block(x, code)
        layers = (self.deform(x) * self.scales).permute(0, 3, 2, 1)  # (B, W, N, 9) mm
        gate = valid.unsqueeze(-1)  # (B, W, 1, 1)
        micro = layers[..., 3:6] * gate
        detail = layers[..., 6:9] * gate
        # The first head refines the total; micro and detail are split off it, so a motion the
        # network calls micro leaves the macro layer by construction (the total stays put).
        macro = (landmarks_mm + layers[..., 0:3]) * gate - micro - detail
        regional = torch.matmul(self.membership, x)  # (B, C, R, W)
        moved = micro.norm(dim=-1).transpose(1, 2)  # (B, N, W) mm
        members = (self.membership > 0).to(moved.dtype).unsqueeze(-1)  # (R, N, 1)
        peak = (moved.unsqueeze(1) * members).amax(dim=2)  # (B, R, W): a micro motion is local, the mean dilutes it
        parts = [regional, torch.matmul(self.membership, moved).unsqueeze(1), peak.unsqueeze(1)]
        if code is not None:
            parts.append(code.unsqueeze(2).expand(-1, -1, regional.shape[2], -1))
        logits = self.event(torch.cat(parts, dim=1))[:, 0].transpose(1, 2)  # (B, W, R)
        return macro, micro, detail, logits


def set_code_range(model: MicroNet, batches: Iterable[tuple[torch.Tensor, ...]], percent: float) -> int:
    """Clip ``model``'s global code, per channel, to the ``percent`` .. ``100 - percent``
    percentiles of its values over the valid frames of ``batches`` (inputs in ``INPUT_NAMES``
    order, from the training data). -> the number of frames measured."""
    encoder = model.global_encoder
    encoder.code_low.fill_(-CODE_UNBOUNDED)
    encoder.code_high.fill_(CODE_UNBOUNDED)
    values = []
    with torch.no_grad():
        for inputs in batches:
            code = encoder(model.vertex_features(*inputs))  # (B, G, W)
            values.append(code.transpose(1, 2)[inputs[3][..., 0] > 0])  # (F, G) valid frames
    frames = torch.cat(values).numpy()
    low, high = np.percentile(frames, [percent, 100.0 - percent], axis=0)  # (G,) each
    encoder.code_low.copy_(torch.as_tensor(low, dtype=torch.float32).view(1, -1, 1))
    encoder.code_high.copy_(torch.as_tensor(high, dtype=torch.float32).view(1, -1, 1))
    return len(frames)


EVENT_INPUT, EVENT_OUTPUT = "coefficients", "event_logits"


@dataclass
class EventDetectorConfig:
    """The micro-event detector: a temporal network over the fused expression-coefficient track
    resampled to a fixed rate, so that one set of weights sees every clip at the same time scale
    (0.15-0.5 s events are 15-50 samples whatever the video's frame rate)."""

    units: int = 52  # K: coefficients per sample (the open head's expression units)
    channels: int = 48
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # kernel 3: 253 samples = 2.5 s seen at 100 Hz
    rate_hz: float = 100.0
    window: int = 256  # samples per window (2.56 s)
    input_scale: float = 10.0  # coefficients of a micro event are ~0.02-0.3
    regions: tuple[str, ...] = EVENT_REGIONS

    def as_dict(self) -> dict:
        return asdict(self)


class EventDetector(nn.Module):
    """(B, K, W) coefficient track -> (B, R, W) per-region event logits. The window's mean is taken
    off first: a micro event is a change, not a level, and the performer's resting expression
    should not matter."""

    def __init__(self, config: EventDetectorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or EventDetectorConfig()
        self.encode = nn.Conv1d(config.units, config.channels, 1)
        self.layers = nn.ModuleList(nn.Conv1d(config.channels, config.channels, 3, padding=d, dilation=d)
                                    for d in config.dilations)
        self.decode = nn.Conv1d(config.channels, len(config.regions), 1)
        self.activation = nn.GELU()

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        centred = (coefficients - coefficients.mean(dim=-1, keepdim=True)) * self.config.input_scale
        h = self.activation(self.encode(centred))
        for layer in self.layers:
            h = h + self.activation(layer(h))
        return self.decode(h)


def export_event_onnx(model: EventDetector, path, opset: int = 17) -> None:
    """ONNX with dynamic batch and window."""
    model.eval()
    example = torch.zeros(2, model.config.units, model.config.window)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), input_names=[EVENT_INPUT], output_names=[EVENT_OUTPUT],
                          dynamic_axes={EVENT_INPUT: {0: "batch", 2: "window"}, EVENT_OUTPUT: {0: "batch", 2: "window"}},
                          opset_version=opset, dynamo=False)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def example_inputs(batch: int, window: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes (export tracing, tests)."""
    generator = torch.Generator().manual_seed(seed)
    count = 478
    geometry = torch.cat([torch.randn(batch, count, 3, generator=generator) * 30.0,
                          nn.functional.normalize(torch.randn(batch, count, 3, generator=generator), dim=-1)], -1)
    return (
        torch.randn(batch, window, count, 3, generator=generator),
        torch.randn(batch, window, count, 3, generator=generator) * 0.05,
        (torch.rand(batch, window, count, 1, generator=generator) > 0.1).float(),
        torch.ones(batch, window, 1),
        geometry,
        torch.full((batch, 1), 60.0),
        torch.randn(batch, window, count, 3, generator=generator),
    )


def export_onnx(model: MicroNet, path, window: int, opset: int = 17) -> None:
    """ONNX with dynamic batch and window; the graph constants (neighbours, regions) are baked in."""
    model.eval()
    axes = {name: {0: "batch", 1: "window"} for name in INPUT_NAMES[:4] + INPUT_NAMES[6:] + OUTPUT_NAMES}
    axes["geometry"] = {0: "batch"}
    axes["fps"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: asked for (dynamo=False)
        torch.onnx.export(model, example_inputs(2, window), str(path), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset, dynamo=False)
