"""The image tasks: one module per task (its facts as an `ImageTask`, and how it checks and
prepares its inputs), listed in `table.TASKS`; `inputs` holds what they share."""
