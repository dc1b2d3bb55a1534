"""An instructor's term around grading: deadlines and extensions, LMS import and export,
similarity reports and their archive."""
