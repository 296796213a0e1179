"""nbgrader configuration of the Transformers course (read by every nbgrader command run here)."""
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import CheckCellMetadata, ClearHiddenTests, ClearOutput, GetGrades, OverwriteKernelspec

from course_grader.command.export import CsvExport
from course_grader.worker.preprocessors import (
    HideHiddenTestTracebacks,
    RecordDuplicateIds,
    RedactHiddenTests,
    RestoreHiddenTests,
)
from course_grader.worker.sanitize import FeedbackExporter, SanitizeSubmission

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "transformers-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# The gradebook is gradebook.db (SQLite). For a big course, or graders on several machines
# (`course grade --scheduler`), a PostgreSQL server works too (the driver comes with .[grader];
# README: "A PostgreSQL gradebook"); `course grade` stays its only writer and its workers use
# private SQLite copies:
# c.CourseDirectory.db_url = "postgresql://grader@db.example.org/transformers_course"

# Heavy work is skipped under NBGRADER_EXECUTION, so no graded cell needs long.
c.Execute.timeout = 60

# Restore hidden tests without a checksum warning for untouched cells (and record duplicated
# cell ids for the report: nbgrader's DeduplicateIds, which grades the last copy).
c.Autograde.sanitize_preprocessors = [ClearOutput, RecordDuplicateIds, OverwriteKernelspec,
                                      RestoreHiddenTests, CheckCellMetadata]

# Feedback never shows hidden tests: neither their source nor their lines in tracebacks, nor
# an output line that quotes them (code a test calls can read the test's source and print it).
# Student content is made inert before it is rendered (after the hidden tests are cleared and
# GetGrades has added the comments), and feedback pages carry a Content-Security-Policy.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestTracebacks, RedactHiddenTests, ClearHiddenTests,
                                    SanitizeSubmission, CSSHTMLHeaderPreprocessor]
c.GenerateFeedback.exporter_class = FeedbackExporter
# Formgrader renders autograded notebooks with HTMLExporter(config=<this file>), on the
# instructor's own Jupyter origin: the same sanitizer runs there.
c.HTMLExporter.preprocessors = [SanitizeSubmission]

# grades.csv (`nbgrader export` and `course grade`): nbgrader's columns, written with the csv
# module (a student id with a comma or newline cannot shift columns or add rows) and no cell
# that a spreadsheet would evaluate as a formula.
c.ExportApp.plugin_class = CsvExport
