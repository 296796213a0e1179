"""nbgrader configuration of the Transformers course (read by every nbgrader command run here)."""
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearOutput, DeduplicateIds,
                                    GetGrades, OverwriteKernelspec)

from course_lib.grading.preprocessors import HideHiddenTestTracebacks, RestoreHiddenTests

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "transformers-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# The gradebook is gradebook.db (SQLite). For a big course, or graders on several machines
# (`course grade --scheduler`), a PostgreSQL server works too; `course grade` stays its only
# writer and its workers use private SQLite copies:
# c.CourseDirectory.db_url = "postgresql://grader@db.example.org/transformers_course"

# Heavy work is skipped under NBGRADER_EXECUTION, so no graded cell needs long.
c.Execute.timeout = 60

# Restore hidden tests without a checksum warning for untouched cells.
c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                      RestoreHiddenTests, CheckCellMetadata]

# Feedback never shows hidden tests: neither their source nor their lines in tracebacks.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestTracebacks, ClearHiddenTests,
                                    CSSHTMLHeaderPreprocessor]
