"""envfactory.data"""
