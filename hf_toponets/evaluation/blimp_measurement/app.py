"""The Hub Space of the BLiMP measurement (upload this folder as a Gradio Space; requirements.txt installs hf-toponets)."""

import evaluate
from evaluate.utils import launch_gradio_widget

launch_gradio_widget(evaluate.load("blimp_measurement.py", module_type="measurement"))
