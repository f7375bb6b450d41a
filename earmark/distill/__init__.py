"""earmark.distill"""
