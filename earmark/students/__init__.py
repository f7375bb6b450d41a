"""earmark.students"""
