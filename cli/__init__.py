"""envfactory.cli"""
