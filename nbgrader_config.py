"""nbgrader configuration of the Transformers course (read by every nbgrader command run here)."""
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, DeduplicateIds,
                                    GetGrades, OverwriteKernelspec)

from course_lib.grading.preprocessors import HideHiddenTestTracebacks, RestoreHiddenTests

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "transformers-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# Heavy work is skipped under NBGRADER_EXECUTION, so no graded cell needs long.
c.Execute.timeout = 60

# Restore hidden tests without a checksum warning for untouched cells.
c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                      RestoreHiddenTests, CheckCellMetadata]

# Feedback never shows hidden tests: neither their source nor their lines in tracebacks.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestTracebacks, ClearHiddenTests,
                                    CSSHTMLHeaderPreprocessor]
