"""CI in the same image as the workspace: generated CI files (`workflow`) and the test run (`run`).

Kept empty of imports: `devenv ci init` is file work and should not pay for the Docker SDK.
"""
