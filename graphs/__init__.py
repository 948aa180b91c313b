"""envfactory.graphs"""
