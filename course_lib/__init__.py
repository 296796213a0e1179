"""course_lib: the reference implementations behind the Transformers course.

One module per concept, each introduced by a notebook (named in its docstrings):
attention (01), multihead (02), positional (03), encoder (04), decoder (05), device,
training and generation (06), bert (07), gpt (08), efficient (09); ``data`` holds the
tokenizers, data sets and offline assets. ``checks`` holds the student-facing checks of the
visible tests, ``viz`` the plots, and ``grading`` the instructor's tooling.
"""
__version__ = "0.1.0"
