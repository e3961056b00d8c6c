"""Never flaky, never silent: bad specs are configuration errors, torch's global
state is isolated, and parallel runs are safe and reproducible."""

import dataclasses
import os
import re

import pytest
import torch
from hypothesis import settings

from layers.lesson import MyLinear
from layers.specs import centered_spec, my_linear_spec
from properties import LayerSpec, SpecError, check_layer, register, registered_properties, tolerances as tol
from properties.registry import unregister
from properties.runner import why_not_run

FAST = settings(max_examples=10, database=None, deadline=None, derandomize=True)


# -- bad input to the framework: configuration errors naming spec and field ----------


def test_a_constructor_that_raises_is_a_spec_error_naming_the_field():
    def broken(**kwargs):
        raise TypeError("unexpected keyword 'in_units'")

    spec = dataclasses.replace(my_linear_spec, name="Broken", module=broken)
    with pytest.raises(SpecError, match=r"LayerSpec 'Broken', field 'module' raised TypeError"):
        check_layer(spec, ["spec_is_usable"], settings=FAST)


def test_inputs_the_layer_cannot_take_are_a_spec_error():
    spec = dataclasses.replace(my_linear_spec, name="WrongInputs", input_event_shape=lambda a: (a["in_units"] + 1,))
    with pytest.raises(SpecError, match=r"'WrongInputs', fields 'input_event_shape'/'batch_dims': the layer rejects"):
        check_layer(spec, ["spec_is_usable"], settings=FAST)


def test_a_reference_of_the_wrong_shape_is_a_spec_error():
    spec = dataclasses.replace(centered_spec, name="WrongReference", reference=lambda m, x: tol.mean(x))
    with pytest.raises(SpecError, match=r"'WrongReference', field 'reference' gives shape"):
        check_layer(spec, ["spec_is_usable"], settings=FAST)


def test_a_reference_that_is_not_bounded_is_a_spec_error():
    spec = dataclasses.replace(centered_spec, name="PlainReference", reference=lambda m, x: x.value - x.value.mean())
    with pytest.raises(SpecError, match=r"field 'reference' returned Tensor"):
        check_layer(spec, ["spec_is_usable"], settings=FAST)


def test_unsupported_dtypes_and_devices_are_skipped_with_the_spec_field_named():
    gradcheck = next(p for p in registered_properties() if p.name == "gradients_match_finite_differences")
    half_only = dataclasses.replace(my_linear_spec, name="HalfOnly", dtypes=(torch.float16,))
    assert "HalfOnly (field 'dtypes') supports float16" in why_not_run(gradcheck, half_only)
    if not torch.cuda.is_available():
        cuda_only = dataclasses.replace(my_linear_spec, name="CudaOnly", devices=("cuda",))
        assert "CudaOnly (field 'devices') supports ['cuda']" in why_not_run(gradcheck, cuda_only)


def test_a_duplicate_layer_name_is_a_spec_error():
    register(dataclasses.replace(my_linear_spec, name="Twice"))
    try:
        with pytest.raises(SpecError, match="'Twice' is already registered"):
            register(dataclasses.replace(centered_spec, name="Twice"))
    finally:
        unregister("Twice")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("dtypes", (torch.int64,), "field 'dtypes'"),
        ("devices", ("tpu",), "field 'devices'"),
        ("batch_dims", (3, 1), "field 'batch_dims'"),
        ("input_event_shape", "3", "field 'input_event_shape'"),
        ("reference", 3, "field 'reference'"),
        ("name", "my layer", "not usable as a test id"),
    ],
)
def test_malformed_fields_are_rejected_when_the_spec_is_written(field, value, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        dataclasses.replace(my_linear_spec, **{field: value})


def test_a_misconfigured_spec_shows_as_config_in_the_report(pytester):
    pytester.makeconftest(
        "import dataclasses\n"
        "from layers.specs import my_linear_spec\n"
        "from properties import register\n"
        "register(dataclasses.replace(my_linear_spec, input_event_shape=lambda a: (a['in_units'] + 1,)))\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--properties", "spec_is_usable")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["spec_is_usable*CONFIG*", "*fields 'input_event_shape'/'batch_dims'*"])


# -- isolation of torch's global state ---------------------------------------------


class SetsDefaultDtype(MyLinear):
    def forward(self, X):
        torch.set_default_dtype(torch.float64)
        return super().forward(X)


class EnablesAnomalyDetection(MyLinear):
    def forward(self, X):
        torch.autograd.set_detect_anomaly(True)
        return super().forward(X)


class ChangesThreadsAndFails(MyLinear):
    def forward(self, X):
        torch.set_num_threads(1 if torch.get_num_threads() > 1 else 2)
        return super().forward(X) + 1  # also wrong


@pytest.mark.parametrize(
    "module, change",
    [(SetsDefaultDtype, "default dtype"), (EnablesAnomalyDetection, "anomaly detection")],
)
def test_a_layer_that_changes_global_state_is_reported_and_does_not_leak(module, change):
    spec = dataclasses.replace(my_linear_spec, name=module.__name__, module=module)
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    with pytest.raises(AssertionError, match=f"changed torch's global state \\({change}"):
        check_layer(spec, ["is_deterministic"], settings=FAST)
    assert torch.get_default_dtype() == dtype
    assert not torch.is_anomaly_enabled()
    assert torch.get_num_threads() == threads


def test_global_state_is_restored_even_when_the_property_fails():
    spec = dataclasses.replace(my_linear_spec, name="ChangesThreadsAndFails", module=ChangesThreadsAndFails)
    threads = torch.get_num_threads()
    with pytest.raises(AssertionError, match="matches_reference failed on ChangesThreadsAndFails.*thread count"):
        check_layer(spec, ["matches_reference"], settings=FAST)
    assert torch.get_num_threads() == threads


def test_the_global_rng_is_untouched_by_a_property_run():
    before = torch.random.get_rng_state()
    check_layer(my_linear_spec, ["gradients_match_finite_differences", "survives_serialization"], settings=FAST)
    assert torch.equal(before, torch.random.get_rng_state())


# -- parallel safety -----------------------------------------------------------------

BROKEN_ABOVE_ONE = """
import dataclasses
from layers.lesson import CenteredLayer
from layers.specs import centered_spec
from properties import register

class BreaksAboveOne(CenteredLayer):
    def forward(self, X):
        return X - X.mean() + (X > 1).any().to(X.dtype)

register(dataclasses.replace(centered_spec, name="BreaksAboveOne", module=BreaksAboveOne))
"""


@pytest.mark.slow  # pytest -n 2 in a subprocess, twice
def test_a_hypothesis_seed_makes_a_parallel_run_reproducible(pytester):
    pytester.makeconftest(BROKEN_ABOVE_ONE)
    args = ("-n", "2", "-p", "no:cacheprovider", "--properties", "matches_reference,is_deterministic",
            "--hypothesis-profile=soak", "--hypothesis-seed=1234")
    first = pytester.runpytest_subprocess(*args)
    second = pytester.runpytest_subprocess(*args)
    draws = [re.findall(r"Draw 1 \(example\): (.*)", r.stdout.str()) for r in (first, second)]
    assert draws[0] and draws[0] == draws[1]


@pytest.mark.slow  # pytest -n 2 in a subprocess
def test_a_crashing_worker_is_reported_not_hung(pytester):
    pytester.makeconftest(
        "import dataclasses, os\n"
        "from layers.lesson import CenteredLayer\n"
        "from layers.specs import centered_spec\n"
        "from properties import register\n"
        "class Crashes(CenteredLayer):\n"
        "    def forward(self, X):\n"
        "        os._exit(3)  # as a segfault or the OOM killer would end the process\n"
        "register(dataclasses.replace(centered_spec, name='Crashes', module=Crashes))\n"
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--properties", "is_deterministic,matches_reference", timeout=300
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*worker*crashed*"])


def test_the_soak_refuses_a_docs_section_that_does_not_exist_before_running_anything():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-m", "properties.soak", "--seeds", "1", "--nightly-seeds", "0",
         "--update-docs=no-such-section", "--", "conftest.py"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "<!-- no-such-section:start -->" in done.stderr and "add them where the record belongs" in done.stderr
    assert "seed" not in done.stdout  # no run started


# -- which processor a record ran on -----------------------------------------------------

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu avx2\n"


def _no_cpuinfo(*args, **kwargs):
    raise OSError("no /proc/cpuinfo here")


def test_the_machine_line_names_the_processor_model_and_torchs_kernels(monkeypatch):
    import io

    from properties import records

    monkeypatch.setattr(records, "open", lambda *a, **k: io.StringIO(CPUINFO), raising=False)
    line = records.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    assert line.startswith(f"AMD EPYC 7B13 64-Core Processor (torch's {capability} kernels), "), line
    # Without /proc/cpuinfo (macOS, Windows): what platform says.
    monkeypatch.setattr(records, "open", _no_cpuinfo, raising=False)
    monkeypatch.setattr(records.platform, "processor", lambda: "arm")
    assert records.cpu_model() == "arm" and records.machine().startswith("arm (torch's ")


def test_the_machine_line_names_the_kernels_aten_cpu_capability_selects():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from properties import records; print(records.processor())"],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}, capture_output=True, text=True, timeout=120, check=True,
    )
    assert done.stdout.strip().endswith("(torch's DEFAULT kernels)"), done.stdout


def test_the_soak_records_its_processor_in_the_table_of_machines(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from properties import records, soak

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "docs").mkdir()
    shutil.copy(root / soak.DOCS, tmp_path / soak.DOCS)
    monkeypatch.chdir(tmp_path)
    before = records.read_section(soak.DOCS, soak.MACHINES).splitlines()
    assert soak.main(["--seeds", "0", "--nightly-seeds", "0", "--update-docs=gallery"]) == 0  # no runs: records only
    after = records.read_section(soak.DOCS, soak.MACHINES).splitlines()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    row = f"| `gallery` | {records.processor()} | {os.cpu_count()} | {gpu} | {torch.__version__} |"
    assert [line for line in after if line.startswith(row)] != [], after
    others = [line for line in before if not line.startswith("| `gallery` |")]
    assert [line for line in after if not line.startswith("| `gallery` |")] == others  # the other rows kept
    with pytest.raises(SystemExit):  # the table is no soak's own section
        soak.main(["--seeds", "0", "--nightly-seeds", "0", f"--update-docs={soak.MACHINES}"])
    assert records.read_section(soak.DOCS, soak.MACHINES).splitlines() == after


def test_the_table_of_machines_in_the_docs_is_the_one_the_soak_writes():
    from pathlib import Path

    from properties import records, soak

    docs = Path(__file__).resolve().parent.parent / soak.DOCS
    text = docs.read_text(encoding="utf-8")
    table = records.read_section(docs, soak.MACHINES)
    assert table == soak.machines_table(text), 'regenerate it: python -c "from properties import soak; soak.record_machines()"'
    assert table.count("\n| `") == text.count("Latest run of `python -m properties.soak")  # a row per soak section
