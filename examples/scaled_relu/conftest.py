"""Register ScaledReLU with the layer gate; `pytest -n auto` then checks every property."""

from hypothesis import strategies as st

from properties import LayerSpec, register, tolerances as tol
from properties.distributions import Uniform
from scaled_relu import ScaledReLU

register(
    LayerSpec(
        name="ScaledReLU",
        module=ScaledReLU,
        constructor_args=st.fixed_dictionaries({"features": st.integers(1, 6)}),
        input_event_shape=lambda args: (args["features"],),
        output_event_shape=lambda args: (args["features"],),
        reference=lambda m, x: tol.multiply(tol.relu(x), tol.exact(m.scale)),
        per_sample=True,
        factory_kwargs=True,
        parameter_shapes=lambda args: {"scale": (args["features"],)},
        parameter_init={"scale": Uniform(0, 1)},  # torch.rand
    )
)
