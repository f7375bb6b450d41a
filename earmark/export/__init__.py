"""earmark.export"""
