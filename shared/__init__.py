"""The app's core, shared by the three functions (MailSender, CancelShutDown, ComputeShutdown).

Entry point for the functions: shared.app. Nothing here reads settings or imports an SDK at import time.
"""
