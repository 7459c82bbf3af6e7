"""The registry's models against the paper's counts (He et al. 2015, Tables 1 and 6).

Table 1's computed rows are checked against the paper's text (../shared/PAPER.md, read by
tests/support/paper_text.py) and against the layers counted in the built nets, not against
resnet/paper's constants or the spec they were built from."""

import math

import pytest
import torch
import torchvision

from resnet import paper
from resnet.models.measure import (
    conv3x3_responses,
    count_multiply_adds,
    count_parameters,
    layer_response_std,
    table1_rows,
)
from resnet.models.nets import ZeroPadShortcut, build_model
from resnet.paper.names import CIFAR_DEPTHS, IMAGENET_DEPTHS, ModelNameError, canonical_name, parse_model_name
from tests.support.paper_text import paper_text


@pytest.fixture(scope="module")
def model():
    """Build each named model once per module (ResNet-1202 and ResNet-152 are not cheap)."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_model(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def table1():
    return {row["name"]: row for row in table1_rows()}


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_option_a_parameters_are_exact(model, depth):
    name = f"cifar-resnet-{depth}"
    assert count_parameters(model(name)) == paper.CIFAR_OPTION_A_PARAMETERS[name]
    # Table 6 rounds the same count to 0.27M .. 19.4M.
    assert round(count_parameters(model(name)) / 1e6, 2) == pytest.approx(
        paper.TABLE6[name].params_millions, abs=0.051)


def _cifar_option_a_parameters(n: int, widths=(16, 32, 64), classes: int = 10) -> int:
    """Parameters of the 6n+2-layer CIFAR ResNet, counted from the paper's description (Sec. 4.2).

    A 3x3 conv with 16 filters; then three stages of 2n 3x3 convs with 16, 32 and 64 filters;
    global average pooling and a 10-way fully connected layer. Convs carry no bias, each is
    followed by BN (a scale and a shift per channel); option A shortcuts add no parameters.
    """
    conv = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731
    batch_norm = lambda c: 2 * c  # noqa: E731
    total = conv(3, widths[0]) + batch_norm(widths[0])
    previous = widths[0]
    for width in widths:
        total += conv(previous, width) + (2 * n - 1) * conv(width, width) + 2 * n * batch_norm(width)
        previous = width
    return total + widths[-1] * classes + classes


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_option_a_counts_follow_from_the_papers_architecture(depth):
    # The recorded constants (and with them the built models, above) agree with a count derived
    # independently from the paper's text, and with Table 6's rounded "# params".
    name = f"cifar-resnet-{depth}"
    derived = _cifar_option_a_parameters((depth - 2) // 6)
    assert paper.CIFAR_OPTION_A_PARAMETERS[name] == derived
    printed = paper.TABLE6[name].params_millions  # 0.27 .. 19.4: rounded to the decimals shown
    decimals = len(f"{printed:g}".partition(".")[2])
    assert round(derived / 1e6, decimals) == printed


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_imagenet_option_b_parameters_match_torchvision_constants(table1, depth):
    row = table1[canonical_name(f"resnet-{depth}-b")]
    expected = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
    assert row["parameters"] == expected[depth]
    assert row["parameters"] == paper.TORCHVISION_OPTION_B_PARAMETERS[f"resnet-{depth}-b"]


@pytest.mark.parametrize("ours, theirs", [("resnet-18-b", torchvision.models.resnet18),
                                          ("resnet-50", torchvision.models.resnet50)])
def test_imagenet_option_b_parameters_match_torchvision_models(model, ours, theirs):
    assert count_parameters(model(ours)) == count_parameters(theirs(weights=None))


@pytest.mark.parametrize("residual, plain", [
    ("cifar-resnet-20", "cifar-plain-20"), ("cifar-resnet-56", "cifar-plain-56"),
    ("resnet-18", "plain-18"), ("resnet-34", "plain-34"), ("resnet-50-a", "plain-50")])
def test_option_a_adds_no_parameters(model, residual, plain):
    assert parse_model_name(residual).shortcut == "A"
    assert count_parameters(model(residual)) == count_parameters(model(plain))


@pytest.mark.parametrize("prefix", ["cifar-resnet-20", "resnet-34"])
def test_option_c_has_more_parameters_than_b_than_a(model, prefix):
    a, b, c = (count_parameters(model(f"{prefix}-{x}")) for x in "abc")
    assert a < b < c


# ---------------------------------------------------------------- Table 1


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_multiply_adds_within_5_percent_of_table1(table1, depth):
    row = table1[canonical_name(f"resnet-{depth}-b")]
    assert row["paper_multiply_adds_e9"] == paper_text().table1_multiply_adds[depth]
    assert row["multiply_adds_e9"] == pytest.approx(row["paper_multiply_adds_e9"], rel=0.05)


def test_count_multiply_adds_is_a_real_count(model):
    # ResNet-50: V1 (stride on the 1x1) is cheaper than V1.5 (stride on the 3x3).
    v1 = count_multiply_adds(model("resnet-50"), 224)
    v15 = count_multiply_adds(model("resnet-50-v1.5"), 224)
    assert 3.7e9 < v1 < 3.9e9 < v15
    # A CIFAR net at 32x32 is about 41M multiply-adds (ResNet-20); it scales with the image.
    small = count_multiply_adds(model("cifar-resnet-20"), 32)
    assert 35e6 < small < 45e6
    assert count_multiply_adds(model("cifar-resnet-20"), 64) > 3.9 * small


@pytest.mark.parametrize("name,size", [("cifar-resnet-20", 32), ("cifar-plain-20", 32), ("cifar-resnet-56-b", 32),
                                       ("resnet-18", 224), ("resnet-34-a", 224), ("resnet-34-c", 112),
                                       ("resnet-50", 224), ("resnet-50-v1.5", 224)])
def test_count_multiply_adds_equals_torchs_flop_counter(model, name, size):
    # The hooks' count (every conv and fc layer) is torch's FlopCounterMode count halved, exactly:
    # option A's zero-padded shortcuts, option C's projections, V1 and V1.5 strides, the fc layer.
    from torch.utils.flop_counter import FlopCounterMode

    net = model(name)
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, size, size))
    net.train(was_training)
    assert count_multiply_adds(net, size) == counter.get_total_flops() // 2


def weighted_layers(net: torch.nn.Module) -> int:
    """The layers the paper counts in a net's depth: the convs on the main path and the fc layer
    (a projection shortcut's 1x1 conv is not counted)."""
    return sum(1 for name, module in net.named_modules()
               if isinstance(module, torch.nn.Linear)
               or (isinstance(module, torch.nn.Conv2d) and "shortcut" not in name))


@pytest.mark.parametrize("depth", IMAGENET_DEPTHS)
def test_table1_rows_follow_the_papers_architecture(model, table1, depth):
    row = table1[canonical_name(f"resnet-{depth}-b")]
    net = model(row["name"])
    stages = ("conv2_x", "conv3_x", "conv4_x", "conv5_x")
    built = tuple(len(getattr(net, stage)) for stage in stages)  # blocks counted in the built net
    assert built == paper_text().table1_blocks[depth]
    assert tuple(row[stage] for stage in stages) == tuple(row["blocks_per_stage"]) == built
    assert row["layers"] == weighted_layers(net) == depth
    first = getattr(net, "conv2_x")[0]
    assert row["block"] == ("bottleneck" if hasattr(first, "conv3") else "basic")  # three convs: 1x1, 3x3, 1x1
    assert row["block"] == ("bottleneck" if depth >= 50 else "basic")  # the paper: 50, 101, 152 bottleneck
    assert parse_model_name(row["name"]).shortcut == "B"


# ---------------------------------------------------------------- architecture


def test_bottleneck_v1_puts_the_stride_on_the_first_1x1(model):
    first = model("resnet-50").conv3_x[0]
    assert first.conv1.kernel_size == (1, 1) and first.conv1.stride == (2, 2)
    assert first.conv2.kernel_size == (3, 3) and first.conv2.stride == (1, 1)
    v15 = model("resnet-50-v1.5").conv3_x[0]
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    assert model("resnet-50").spec.variant == "v1"


def test_output_shapes(model):
    torch.manual_seed(0)
    for name in ("cifar-resnet-20", "cifar-plain-20", "cifar-resnet-20-b", "cifar-resnet-20-c"):
        assert model(name)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for name in ("resnet-18", "plain-34", "resnet-50-a", "resnet-50"):
        assert model(name)(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    assert build_model("resnet-18", num_classes=10)(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_channels_last_gives_the_same_output(model):
    net = model("cifar-resnet-20").eval()
    images = torch.randn(2, 3, 32, 32)
    expected = net(images)
    net_cl = build_model("cifar-resnet-20").to(memory_format=torch.channels_last).eval()
    net_cl.load_state_dict(net.state_dict())
    got = net_cl(images.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    assert ZeroPadShortcut(64, 256, stride=1)(torch.randn(1, 64, 4, 4)).shape == (1, 256, 4, 4)


def test_shortcut_kinds_per_option(model):
    stage2 = model("cifar-resnet-20").conv3_x
    assert isinstance(stage2[0].shortcut, ZeroPadShortcut)
    assert isinstance(stage2[1].shortcut, torch.nn.Identity)
    assert isinstance(model("cifar-resnet-20-b").conv3_x[0].shortcut, torch.nn.Sequential)
    assert isinstance(model("cifar-resnet-20-b").conv3_x[1].shortcut, torch.nn.Identity)
    assert isinstance(model("cifar-resnet-20-c").conv3_x[1].shortcut, torch.nn.Sequential)
    assert model("cifar-plain-20").conv3_x[0].shortcut is None


def test_spec_and_he_init(model):
    net = model("cifar-resnet-56")
    assert net.spec == parse_model_name("cifar-resnet-56-a")
    assert net.spec.blocks_per_stage == (9, 9, 9) and net.spec.dataset == "cifar10"
    conv = net.conv3_x[1].conv1  # fan_out = 32 * 3 * 3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.1)
    assert torch.all(net.bn1.weight == 1) and torch.all(net.bn1.bias == 0)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name, canonical", [
    ("resnet-34-a", "resnet-34"), ("resnet-34", "resnet-34"), ("resnet-34-b", "resnet-34-b"),
    ("resnet-50-b", "resnet-50"), ("resnet-50-a", "resnet-50-a"), ("resnet-18-c", "resnet-18-c"),
    ("cifar-resnet-56-a", "cifar-resnet-56"), ("cifar-resnet-56-b", "cifar-resnet-56-b"),
    ("cifar-plain-20", "cifar-plain-20"), ("plain-152", "plain-152"),
    ("resnet-50-b-v1.5", "resnet-50-v1.5"), ("cifar-resnet-26", "cifar-resnet-26")])
def test_canonical_names(name, canonical):
    assert canonical_name(name) == canonical


@pytest.mark.parametrize("name, fragments", [
    ("resnet-35", ["ImageNet depths are 18, 34, 50, 101, 152", "use e.g. 'resnet-34'"]),
    ("cifar-resnet-21", ["depth 21 is not 6n+2", "try 20 or 26"]),
    ("cifar-plain-2", ["not 6n+2", "try 8"]),
    ("resnet-34-d", ["-a", "-b", "-c", "e.g. 'resnet-34-b'"]),
    ("plain-34-b", ["plain nets have no shortcuts", "use 'plain-34' or 'resnet-34-b'"]),
    ("resnet-34-v1.5", ["only to bottleneck", "drop the suffix"]),
    ("ResNet-34", ["lowercase", "use 'resnet-34'"]),
    ("vgg-16", ["use e.g. 'resnet-34'", "cifar-{plain,resnet}-{6n+2}"]),
])
def test_bad_names_say_how_to_fix_them(name, fragments):
    with pytest.raises(ModelNameError) as error:
        parse_model_name(name)
    message = str(error.value)
    assert isinstance(error.value, ValueError) and "\n" not in message and repr(name) in message
    for fragment in fragments:
        assert fragment in message


# ---------------------------------------------------------------- Figure 7 measurement


def test_layer_response_std_per_3x3_layer(model):
    net = model("cifar-resnet-20")
    names = [name for name, _ in conv3x3_responses(net)]
    assert len(names) == 19  # the first conv + 2 x 3 x 3
    assert names[:3] == ["conv1", "conv2_x.0.conv1", "conv2_x.0.conv2"]
    assert names[-1] == "conv4_x.2.conv2"
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 3, 32, 32, generator=generator) for _ in range(3)]
    net.train()
    stds = layer_response_std(net, batches)
    assert net.training  # the previous mode is restored
    assert len(stds) == 19
    assert all(math.isfinite(s) and s > 0 for s in stds)
    # Streaming over batches gives the std over all units and images of the whole set.
    net.eval()  # the measurement uses BN's running statistics
    with torch.no_grad():
        first = net.bn1(net.conv1(torch.cat(batches)))
    assert stds[0] == pytest.approx(first.double().std(correction=0).item(), rel=1e-6)


def test_layer_response_counts_for_figure7_models(model):
    assert len(conv3x3_responses(model("cifar-plain-56"))) == 55
    # ImageNet's first conv is 7x7, so only the bottlenecks' 3x3s count: one per block.
    assert len(conv3x3_responses(model("resnet-50"))) == 16


# ---------------------------------------------------------------- the paper's tables


def test_paper_tables_accept_any_spelling_of_a_model():
    assert paper.TABLE2["resnet-34-a"] is paper.TABLE2["resnet-34"]
    assert paper.TABLE2["resnet-34-a"].top1 == 25.03
    assert paper.TABLE3["resnet-50-b"].top5 == 6.71
    assert "cifar-resnet-110-a" in paper.TABLE6
    assert paper.TABLE6["cifar-resnet-110"].mean == 6.61
    assert paper.TABLE3["GoogLeNet"].quoted and paper.TABLE3["GoogLeNet"].top1 is None
    with pytest.raises(KeyError):
        paper.TABLE2["resnet-50"]


def test_paper_keys_and_cells_are_canonical_registry_names():
    for table in (paper.TABLE1, paper.TABLE2, paper.TABLE3, paper.TABLE6,
                  paper.CIFAR_OPTION_A_PARAMETERS, paper.TORCHVISION_OPTION_B_PARAMETERS):
        for key, row in table.items():
            if not getattr(row, "quoted", False):
                assert canonical_name(key) == key
    for panels in paper.FIGURES.values():
        for names in panels.values():
            assert all(canonical_name(name) == name for name in names)
    cells = paper.trained_cells()
    assert "cifar-resnet-1202" in cells and "resnet-34-c" in cells and "VGG-16" not in cells
    assert len(cells) == len(set(cells))
