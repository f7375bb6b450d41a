"""earmark.runtime"""
