"""earmark.engine"""
