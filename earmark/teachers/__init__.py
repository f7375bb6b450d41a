"""earmark.teachers"""
