"""--config FILE.yaml: defaults from YAML, checked exactly as the command line, overridden by it."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest
import yaml

from config_files import (NOT_REPEATED_OPTIONS, ConfigError, apply_config, config_yaml_text, load_config_file,
                          parse_args_with_config, write_config_yaml)
from options import build_train_parser, parse_train_options
from utils import write_json

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs").glob("*.yaml"))

# One file exercising every kind of flag, and the command line it stands for.
RICH_CONFIG = """\
data_path: /data/kitti
model_name: rich            # an alias, as on the command line
learning_rate: 2e-4         # YAML 1.1 reads this as text; the flag's float() converts it
frame_ids: [0, -1, 1]
use_stereo: true
jpg: true
flip: false                 # BooleanOptionalAction
disable_automasking: true   # a store_false alias
scales: [0, 1, 2]           # the alias writing num_scales
scheduler_step_size: 12     # the alias writing decay_step
resize_ratio: [1.1, 1.5]
num_layers: 34
pose_num_layers: 18
mixed_precision: none       # the text 'none', not YAML's null
no_cuda: true
channels_last: null         # the flag's default (None)
--batch_size: 6             # dashes are accepted
weight-decay: 0.0
"""
RICH_COMMAND_LINE = ["--data_path", "/data/kitti", "--model_name", "rich", "--learning_rate", "2e-4",
                     "--frame_ids", "0", "-1", "1", "--use_stereo", "--jpg", "--no-flip", "--disable_automasking",
                     "--scales", "0", "1", "2", "--scheduler_step_size", "12", "--resize_ratio", "1.1", "1.5",
                     "--num_layers", "34", "--pose_num_layers", "18", "--mixed_precision", "none", "--no_cuda",
                     "--batch_size", "6", "--weight_decay", "0.0"]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def usage_error(capsys, parse, *args) -> str:
    """The message of the usage error ``parse(*args)`` exits with (argparse exits with status 2)."""
    with pytest.raises(SystemExit) as exited:
        parse(*args)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_a_config_and_the_equivalent_command_line_give_byte_identical_opt_json(tmp_path):
    from_file = parse_train_options(["--config", str(write(tmp_path, RICH_CONFIG))])
    from_flags = parse_train_options(RICH_COMMAND_LINE)
    assert vars(from_file) == vars(from_flags)
    assert list(vars(from_file)) == list(vars(from_flags))  # same order, so the same JSON text
    write_json(tmp_path / "a.json", vars(from_file))
    write_json(tmp_path / "b.json", vars(from_flags))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # The values really came from the file: all but frame_ids and channels_last differ from the defaults.
    defaults = parse_train_options([])
    assert from_file.learning_rate == 2e-4 and from_file.exp_name == "rich" and from_file.num_scales == 3
    assert from_file.decay_step == [12] and from_file.img_ext == ".jpg" and from_file.device == "cpu"
    assert not from_file.flip and not from_file.automask and from_file.batch_size == 6
    assert from_file.weight_decay == 0.0 and from_file.resize_ratio == [1.1, 1.5]
    differing = {k for k in vars(defaults) if vars(defaults)[k] != vars(from_file)[k]}
    assert differing == {"data_path", "exp_name", "learning_rate", "use_stereo", "img_ext", "flip", "automask",
                         "num_scales", "decay_step", "resize_ratio", "num_layers", "pose_num_layers",
                         "mixed_precision", "device", "batch_size", "weight_decay"}
    assert "config" not in vars(from_file)


@pytest.mark.parametrize("line, flags", [
    ("img_ext: .jpg", ["--jpg"]),                   # a destination shared by two constant flags
    ("img_ext: .png", ["--png"]),
    ("no-flip: true", ["--no-flip"]),               # the negative spelling of a BooleanOptionalAction
    ("no-flip: false", ["--flip"]),
    ("flip: false", ["--no-flip"]),
    ("use_stereo: false", []),                      # a plain switch set to false is not given
    ("--local-rank: 3", ["--local-rank", "3"]),
    ("exp_name: 2024", ["--exp_name", "2024"]),     # a YAML number for a text flag is its text
    ("decay_step: 15", ["--decay_step", "15"]),     # one value for a list flag
    ("eta_min: 1e-6", ["--eta_min", "1e-6"]),       # YAML 1.1 text, converted by float() as on the command line
    ("eta_min: 1.0e-6", ["--eta_min", "1e-6"]),
])
def test_each_spelling_means_its_flags(tmp_path, line, flags):
    from_file = parse_train_options(["--config", str(write(tmp_path, line + "\n"))])
    assert vars(from_file) == vars(parse_train_options(flags))


@pytest.mark.parametrize("order", ["flag_first", "config_first"])
def test_the_command_line_overrides_the_file_wherever_it_stands(tmp_path, order):
    path = str(write(tmp_path, "learning_rate: 2.0e-4\nbatch_size: 6\njpg: true\nflip: false\n"))
    flags = ["--learning_rate", "3e-4", "--png", "--flip"]
    argv = flags + ["--config", path] if order == "flag_first" else ["--config", path] + flags
    opts = parse_train_options(argv)
    assert opts.learning_rate == 3e-4 and opts.img_ext == ".png" and opts.flip  # the command line wins
    assert opts.batch_size == 6  # the file still sets what the command line does not
    # --jpg and --png exclude each other on the command line; the file only changed the default.


def test_arguments_from_an_at_file_may_name_the_config(tmp_path):
    path = write(tmp_path, "batch_size: 5\n")
    args = write(tmp_path, f"--config\n{path}\n--num_epochs\n3\n", "args.txt")
    opts = parse_train_options([f"@{args}"])
    assert (opts.batch_size, opts.num_epochs) == (5, 3)


def test_a_required_flag_given_in_the_file_satisfies_argparse(tmp_path, capsys):
    from test_simple import build_parser

    path = write(tmp_path, "image_path: frames\npretrained_path: model.pth\nbatch_size: 3\n")
    opts = parse_args_with_config(build_parser(), ["--config", str(path)])
    assert (opts.image_path, opts.pretrained_path, opts.batch_size) == ("frames", "model.pth", 3)
    opts = parse_args_with_config(build_parser(), ["--config", str(path), "--image_path", "other"])
    assert opts.image_path == "other"
    message = usage_error(capsys, parse_args_with_config, build_parser(), ["--pretrained_path", "x"])
    assert "--image_path" in message  # still required without the file
    unset = write(tmp_path, "image_path: null\npretrained_path: model.pth\n", "unset.yaml")
    message = usage_error(capsys, parse_args_with_config, build_parser(), ["--config", str(unset)])
    assert "the following arguments are required: --image_path" in message  # null gives no value


def test_a_file_read_back_from_config_yaml_text_repeats_every_option(tmp_path):
    for argv in ([], RICH_COMMAND_LINE, ["--config", str(RECIPES[0]), "--pose_num_layers", "34"]):
        opts = parse_train_options(argv)
        text = config_yaml_text(vars(opts), title="a run\nrepeat it")
        assert text.startswith("# a run\n# repeat it\n")
        saved = yaml.safe_load(text)
        assert not set(saved) & set(NOT_REPEATED_OPTIONS)
        assert set(saved) == set(vars(opts)) - set(NOT_REPEATED_OPTIONS)
        again = parse_train_options(["--config", str(write(tmp_path, text))])
        assert vars(again) == vars(opts)


def test_config_yaml_leaves_out_how_the_run_folder_was_treated(tmp_path):
    opts = parse_train_options(["--overwrite", "--local_rank", "0"])
    path = tmp_path / "run" / "config.yaml"
    write_config_yaml(path, vars(opts), title="t")
    saved = yaml.safe_load(path.read_text())
    for name in ("overwrite", "resume", "force_resume", "local_rank", "config"):
        assert name not in saved
    assert saved["exp_name"] == "mdp" and saved["learning_rate"] == 1e-4
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary left behind


# ------------------------------------------------------------------------------ errors name the file and the fix

@pytest.mark.parametrize("text, expected", [
    ("learning_rat: 1.0e-4\n", ["unknown key 'learning_rat'", "did you mean 'learning_rate'"]),
    ("bach_size: 4\n", ["unknown key 'bach_size'", "'batch_size' (--batch_size)"]),
    ("zzzzzz: 1\n", ["unknown key 'zzzzzz'", "see --help"]),
    ("batch_size: 1.5\n", ["batch_size:", "1.5", "--batch_size takes an integer"]),
    ("learning_rate: fast\n", ["learning_rate:", "'fast'", "--learning_rate takes a number"]),
    ("num_layers: 19\n", ["num_layers:", "not a valid choice", "one of 18, 34, 50, 101, 152"]),
    ("optimizer: [adam]\n", ["optimizer:", "is a list", "--optimizer takes one value"]),
    ("resize_ratio: [1.2]\n", ["resize_ratio:", "has 1 value(s)", "a list of 2 values, each a number"]),
    ("frame_ids: []\n", ["frame_ids:", "the list is empty", "one or more"]),
    ("frame_ids: [0, x]\n", ["frame_ids:", "each an integer"]),
    ("use_stereo: 1\n", ["use_stereo:", "not a switch value", "--use_stereo takes true or false"]),
    ("flip: 'no'\n", ["flip:", "--flip takes true or false"]),
    ("split: yes\n", ["split:", "a YAML boolean (true;", "--split takes text", "quote it"]),
    ("batch_size: null\n", ["batch_size:", "null is not a value of --batch_size", "default 12"]),
    ("img_ext: .bmp\n", ["img_ext:", "'.jpg' (--jpg)", "'.png' (--png)"]),
    ("img_ext: true\n", ["img_ext:", "True is not one of the values its flags store"]),
    ("ssim: true\nno_ssim: true\n", ["'no_ssim' and 'ssim' both set the same option (ssim)"]),
    ("scales: [1, 2]\n", ["scales:", "--scales must be 0 1 ... n-1"]),
    ("config: other.yaml\n", ["'config' cannot be set in a config file", "do not include other files"]),
    ("help: true\n", ["'help' cannot be set"]),
    ("1: 2\n", ["the key 1 is not a flag name"]),
    ("data_path: {a: 1}\n", ["data_path:", "is a mapping"]),
])
def test_a_wrong_key_or_value_names_the_file_the_key_and_the_form(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    message = usage_error(capsys, parse_train_options, ["--config", str(path)])
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- 1\n- 2\n", "holds a list, not a mapping of flag names to values"),
    ("just text\n", "holds a single text value, not a mapping"),
    ("a: [1, 2\n", "not valid YAML at line 2, column 1 (expected ',' or ']'"),
    ("a: 1\n  b: 2\n", "not valid YAML"),
    ("\tbatch_size: 4\n", "not valid YAML"),
    ("batch_size: 4\nheight: 96\nbatch_size: 8\n", "'batch_size' is given twice (lines 1 and 3); keep one of each"),
])
def test_an_unusable_file_is_named_with_the_fix(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    message = usage_error(capsys, parse_train_options, ["--config", str(path)])
    assert f"--config {path}" in message and expected in message
    assert "flag_name: value" in message or "keep one" in message  # the fix


def test_a_missing_file_is_named(tmp_path, capsys):
    message = usage_error(capsys, parse_train_options, ["--config", str(tmp_path / "nope.yaml")])
    assert f"--config {tmp_path / 'nope.yaml'}: no such file" in message and "configs/" in message


def test_an_abbreviated_config_flag_is_refused_not_skipped(tmp_path, capsys):
    path = write(tmp_path, "batch_size: 5\n")
    message = usage_error(capsys, parse_train_options, ["--conf", str(path)])
    assert "write --config in full" in message


def test_two_config_files_are_refused_not_silently_one(tmp_path, capsys):
    first, second = write(tmp_path, "batch_size: 5\n", "a.yaml"), write(tmp_path, "batch_size: 6\n", "b.yaml")
    message = usage_error(capsys, parse_train_options, ["--config", str(first), "--config", str(second)])
    assert f"--config is given 2 times ({first}, {second}); give one file" in message


def test_a_yaml_file_cannot_construct_objects_or_run_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = write(tmp_path, f"exp_name: !!python/object/apply:os.system ['touch {marker}']\n")
    message = usage_error(capsys, parse_train_options, ["--config", str(path)])
    assert "not valid YAML at line 1" in message and "python/object/apply:os.system" in message
    assert str(path) in message and not marker.exists()


def test_a_failed_config_changes_no_default():
    parser = build_train_parser()
    with pytest.raises(ConfigError):
        apply_config(parser, {"batch_size": 4, "num_layers": 19}, "f.yaml")
    assert parser.get_default("batch_size") == 12


def test_load_config_file_returns_the_mapping(tmp_path):
    assert load_config_file(write(tmp_path, "a: 1\nb: [x, y]\n")) == {"a": 1, "b": ["x", "y"]}


# ------------------------------------------------------------------------------ every script reads --config

# Every top-level script (a module with ``main(argv=None)``), so a new one cannot miss --config.
SCRIPTS = sorted(p.stem for p in REPO.glob("*.py") if "\ndef main(argv" in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_reads_its_config_before_doing_anything(tmp_path, capsys, script):
    path = write(tmp_path, "not_a_flag_of_any_script: 1\n")
    main = importlib.import_module(script).main
    message = usage_error(capsys, main, ["--config", str(path)])
    assert f"--config {path}: unknown key 'not_a_flag_of_any_script'" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # nothing was written


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_lists_config_in_its_help(capsys, script):
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(script).main(["--help"])
    message = capsys.readouterr().out
    assert exited.value.code == 0 and "--config FILE.yaml" in message


# ------------------------------------------------------------------------------ the shipped recipes

def test_the_recipes_are_there():
    names = {p.stem for p in RECIPES}
    assert {"monodepth2_mono_640x192", "monodepth2_stereo_640x192", "monodepth2_mono_stereo_640x192",
            "monodepth2_mono_1024x320", "bdedepth_hrnet18_640x192", "bdedepth_resnet18_640x192",
            "packnet_640x192", "sqldepth_resnet50_640x192_mono", "sqldepth_resnet50_640x192_mono_stereo",
            "sqldepth_convnext_large_1024x320_mono_stereo", "featdepth_autoencoder_800x256",
            "featdepth_mono_stereo_1024x320", "featdepth_mono_stereo_joint_640x192"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_passes_validation_through_the_real_parser(recipe):
    first_line = recipe.read_text().splitlines()[0]
    assert first_line.startswith("# ") and "abs_rel" in first_line  # its source and published number
    data = load_config_file(recipe)
    assert "data_path" not in data and "log_dir" not in data  # the user gives the paths
    opts = parse_train_options(["--config", str(recipe), "--data_path", "/dummy"])
    for key, value in data.items():
        if hasattr(opts, key):
            assert getattr(opts, key) == value, key
    assert opts.exp_name == data["exp_name"]


# What run_kitti.sh and run_cityscapes.sh ran before they read the recipes (the reference command lines).
KITTI = ["--dataset", "kitti", "--height", "192", "--width", "640", "--eval_split", "eigen", "--num_workers", "12"]
MD2 = ["--backbone", "resnet", "--num_layers", "18", "--num_scales", "4", "--batch_size", "12", "--optimizer",
       "adam", "--learning_rate", "1e-4", "--num_epochs", "20", "--lr_sche_type", "step", "--decay_step", "15",
       "--decay_rate", "0.1"]
BDE = ["--split", "eigen_zhou", "--num_layers", "18", "--decoder", "bdedepth", "--num_scales", "1", "--batch_size",
       "10", "--optimizer", "adamw", "--lr_sche_type", "step", "--learning_rate", "1e-4", "--eta_min", "5e-6",
       "--num_epochs", "20", "--decay_step", "15", "--decay_rate", "0.1", "--log_frequency", "400",
       "--save_frequency", "400", "--use_local_crop", "--use_patch_reshuffle"]
REFERENCE_COMMANDS = {
    "monodepth2_mono_640x192": KITTI + MD2 + ["--exp_name", "mono_640x192", "--split", "eigen_zhou"],
    "monodepth2_stereo_640x192": KITTI + MD2 + ["--exp_name", "stereo_640x192", "--split", "eigen_full",
                                                "--use_stereo", "--frame_ids", "0"],
    "monodepth2_mono_stereo_640x192": KITTI + MD2 + ["--exp_name", "mono_stereo_640x192", "--split", "eigen_zhou",
                                                     "--use_stereo"],
    "monodepth2_mono_1024x320": KITTI + MD2 + ["--exp_name", "mono_1024x320", "--split", "eigen_zhou", "--height",
                                               "320", "--width", "1024", "--num_epochs", "5", "--learning_rate",
                                               "1e-5"],
    "bdedepth_hrnet18_640x192": KITTI + BDE + ["--backbone", "hrnet", "--exp_name", "kitti_hrnet18_640x192"],
    "bdedepth_resnet18_640x192": KITTI + BDE + ["--backbone", "resnet", "--exp_name", "kitti_resnet18_640x192"],
    "bdedepth_cityscapes_resnet18_512x192": [
        "--split", "cityscapes", "--exp_name", "cs_resnet18_512x192", "--dataset", "cityscapes", "--backbone",
        "resnet", "--num_layers", "18", "--decoder", "bdedepth", "--width", "512", "--height", "192",
        "--num_scales", "1", "--batch_size", "12", "--optimizer", "adamw", "--lr_sche_type", "step",
        "--learning_rate", "1e-4", "--eta_min", "5e-6", "--num_epochs", "20", "--decay_step", "15", "--decay_rate",
        "0.1", "--log_frequency", "600", "--save_frequency", "600", "--num_workers", "12", "--use_local_crop",
        "--use_patch_reshuffle"],
    # PackNet-SfM configs/train_kitti.yaml in our flags (methods_spec 1.6).
    "packnet_640x192": KITTI + ["--exp_name", "packnet_640x192", "--split", "eigen_zhou", "--backbone", "packnet",
                                "--decoder", "packnet", "--pose_model_type", "packnet", "--pose_model_input", "all",
                                "--weights_init", "scratch", "--optimizer", "adam", "--learning_rate", "2e-4",
                                "--decay_step", "30", "--decay_rate", "0.5", "--num_epochs", "50", "--batch_size",
                                "4", "--seed", "42", "--loss_preset", "packnet", "--color_jitter_probability", "1.0",
                                "--color_jitter_hue", "0.05", "--flip_mode", "depth_net"],
}
# SQLdepth's args files (hisfog/kitti/*.txt, methods_spec 3.4-3.6) in our flags.
SQL = KITTI + ["--split", "eigen_zhou", "--png", "--decoder", "sql", "--num_scales", "1", "--max_depth", "80",
               "--sql_model_dim", "32", "--pose_model_type", "posecnn", "--pose_lr_factor", "0.1", "--jitter_per_frame",
               "--optimizer", "adam", "--learning_rate", "1e-4", "--lr_sche_type", "step", "--decay_rate", "0.1",
               "--batch_size", "16"]
SQL_R50 = SQL + ["--backbone", "resnet", "--num_layers", "50", "--num_epochs", "25", "--decay_step", "15"]
SQL_1024 = ["--height", "320", "--width", "1024", "--sql_num_queries", "128", "--sql_num_bins", "128"]
REFERENCE_COMMANDS.update({
    "sqldepth_resnet50_640x192_mono": SQL_R50 + [
        "--exp_name", "sqldepth_resnet50_640x192_mono", "--min_depth", "0.001", "--sql_patch_size", "16",
        "--pose_translation_scaling", "mean_inverse_depth"],
    "sqldepth_resnet50_640x192_mono_stereo": SQL_R50 + [
        "--exp_name", "sqldepth_resnet50_640x192_mono_stereo", "--min_depth", "0.001", "--use_stereo"],
    "sqldepth_resnet50_1024x320_mono_stereo": SQL_R50 + SQL_1024 + [
        "--exp_name", "sqldepth_resnet50_1024x320_mono_stereo", "--min_depth", "0.01", "--sql_patch_size", "20",
        "--use_stereo"],
    "sqldepth_efficientnet_b5_1024x320_mono": SQL + SQL_1024 + [
        "--exp_name", "sqldepth_efficientnet_b5_1024x320_mono", "--backbone", "efficientnet_b5", "--min_depth",
        "0.001", "--sql_patch_size", "32", "--num_epochs", "25", "--decay_step", "15", "--pose_translation_scaling",
        "mean_inverse_depth"],
    "sqldepth_convnext_large_1024x320_mono_stereo": SQL + [
        "--height", "320", "--width", "1024", "--exp_name", "sqldepth_convnext_large_1024x320_mono_stereo",
        "--backbone", "convnext_large", "--min_depth", "0.001", "--sql_patch_size", "32", "--num_epochs", "20",
        "--decay_step", "10", "--use_stereo"],
})

# FeatDepth's config/*.py (methods_spec 2.1, 2.4, 2.5) in our flags: Adam 1e-4 without weight decay, x0.5
# steps, 500 warm-up steps from 1/3, gradient norm clipped at 35, seed 1024.
FD = ["--dataset", "kitti", "--split", "eigen_zhou", "--optimizer", "adam", "--learning_rate", "1e-4",
      "--lr_sche_type", "step", "--decay_rate", "0.5", "--warmup_steps", "500", "--warmup_ratio", str(1 / 3),
      "--clip_grad", "35", "--seed", "1024"]
FD_DEPTH = FD + ["--eval_split", "eigen", "--frame_ids", "0", "-1", "1", "--use_stereo", "--stereo_baseline", "0.015",
                 "--backbone", "resnet", "--num_layers", "50", "--decoder", "featdepth", "--pose_num_layers", "18",
                 "--pose_input_size", "192", "640", "--num_scales", "4", "--loss_preset", "featdepth",
                 "--no-automask", "--feature_metric_weight", "1e-3", "--batch_size", "2", "--num_epochs", "40",
                 "--decay_step", "20", "30"]
REFERENCE_COMMANDS.update({
    "featdepth_autoencoder_800x256": FD + [
        "--exp_name", "featdepth_autoencoder_800x256", "--method", "autoencoder", "--no-eval", "--height", "256",
        "--width", "800", "--frame_ids", "0", "--batch_size", "5", "--num_epochs", "30", "--decay_step", "10", "20"],
    "featdepth_mono_stereo_1024x320": FD_DEPTH + [
        "--exp_name", "featdepth_mono_stereo_1024x320", "--height", "320", "--width", "1024",
        "--feature_net_path", "runs/featdepth_autoencoder_800x256/models/model29.pth"],
    "featdepth_mono_stereo_joint_640x192": FD_DEPTH + [
        "--exp_name", "featdepth_mono_stereo_joint_640x192", "--height", "192", "--width", "640",
        "--feature_net_joint"],
})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_is_its_reference_command_line(recipe):
    paths = ["--data_path", "/dummy"]
    from_file = parse_train_options(["--config", str(recipe)] + paths)
    assert vars(from_file) == vars(parse_train_options(REFERENCE_COMMANDS[recipe.stem] + paths))


def test_a_recipe_takes_command_line_changes(tmp_path):
    recipe = REPO / "configs" / "bdedepth_hrnet18_640x192.yaml"
    opts = parse_train_options(["--config", str(recipe), "--data_path", "/d", "--batch_size", "5", "--backbone",
                                "resnet", "--no-flip"])
    assert (opts.batch_size, opts.backbone, opts.flip, opts.use_local_crop) == (5, "resnet", False, True)


def test_a_parser_without_config_gets_it_once():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1)
    assert vars(parse_args_with_config(parser, ["--n", "2"])) == {"n": 2}
    assert vars(parse_args_with_config(parser, [])) == {"n": 1}  # a second call adds nothing


@pytest.mark.parametrize("has_yaml", [True, False])
def test_a_new_run_writes_config_yaml_beside_opt_json_unless_pyyaml_is_missing(tmp_path, monkeypatch, caplog,
                                                                               has_yaml):
    import json
    import sys
    from types import SimpleNamespace

    from trainer import Trainer

    opts = parse_train_options(["--log_dir", str(tmp_path), "--exp_name", "run", "--batch_size", "3"])
    if not has_yaml:
        monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` fails as if it were not installed
    Trainer.claim_run_folder(SimpleNamespace(run_dir=tmp_path / "run", opts=opts))
    assert json.loads((tmp_path / "run" / "opt.json").read_text())["batch_size"] == 3
    if has_yaml:
        assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["batch_size"] == 3
    else:
        assert not (tmp_path / "run" / "config.yaml").exists()
        assert "config.yaml not written: PyYAML is not installed" in caplog.text
